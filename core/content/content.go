// Package content defines berth's content-addressed blob store: blobs are
// written through named ingests, verified against their digest on commit and
// then read by digest. The local implementation lives in content/local; the
// namespaced view over it lives in core/metadata.
package content

import (
	"context"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Info describes one committed blob.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time
	UpdatedAt time.Time
	Labels    map[string]string
}

// Status describes one ingest in progress.
type Status struct {
	Ref       string
	Offset    int64
	Total     int64
	Expected  digest.Digest
	StartedAt time.Time
	UpdatedAt time.Time
}

// ReaderAt reads a committed blob at random offsets.
type ReaderAt interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Provider opens committed blobs.
type Provider interface {
	// ReaderAt opens the blob named by desc.Digest; errdefs.ErrNotFound when absent.
	ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ReaderAt, error)
}

// Writer writes one ingest. Writes append at the current offset; Commit
// verifies size and digest and moves the data into the store.
type Writer interface {
	io.WriteCloser
	// Digest is the digest of everything written so far.
	Digest() digest.Digest
	// Commit verifies the written data against size and expected (either may
	// be zero to skip that check) and makes the blob visible. A mismatch
	// returns errdefs.ErrFailedPrecondition and stores nothing.
	Commit(ctx context.Context, size int64, expected digest.Digest, opts ...Opt) error
	// Status reports the ingest's progress.
	Status() (Status, error)
	// Truncate resets the ingest to size (only 0 is required to work).
	Truncate(size int64) error
}

// Ingester opens writers for named ingests.
type Ingester interface {
	// Writer opens (or resumes) the ingest named by the WithRef option. While
	// a writer holds a ref, another Writer call for it returns
	// errdefs.ErrUnavailable. When the expected digest is already committed it
	// returns errdefs.ErrAlreadyExists.
	Writer(ctx context.Context, opts ...WriterOpt) (Writer, error)
}

// IngestManager inspects and aborts ingests.
type IngestManager interface {
	Status(ctx context.Context, ref string) (Status, error)
	ListStatuses(ctx context.Context, filters ...string) ([]Status, error)
	Abort(ctx context.Context, ref string) error
}

// WalkFunc is called for each blob by Walk.
type WalkFunc func(Info) error

// Manager reads and changes blob metadata.
type Manager interface {
	Info(ctx context.Context, dgst digest.Digest) (Info, error)
	// Update changes the fields named in fieldpaths ("labels", "labels.<key>");
	// with no fieldpaths it replaces all labels.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Walk calls fn for every blob matching any of filters (containerd filter
	// syntax); no filters means every blob.
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	Delete(ctx context.Context, dgst digest.Digest) error
}

// Store is a full content store.
type Store interface {
	Manager
	Provider
	IngestManager
	Ingester
}

// Opt changes how a blob is committed.
type Opt func(*Info) error

// WithLabels sets labels on the committed blob.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		info.Labels = labels
		return nil
	}
}

// WriterOpts are the settings of a Writer call.
type WriterOpts struct {
	Ref  string
	Desc ocispec.Descriptor
}

// WriterOpt sets one WriterOpts field.
type WriterOpt func(*WriterOpts) error

// WithRef names the ingest; required.
func WithRef(ref string) WriterOpt {
	return func(o *WriterOpts) error {
		o.Ref = ref
		return nil
	}
}

// WithDescriptor gives the expected digest and size, when known.
func WithDescriptor(desc ocispec.Descriptor) WriterOpt {
	return func(o *WriterOpts) error {
		o.Desc = desc
		return nil
	}
}
