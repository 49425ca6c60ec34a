// Package diff turns layer blobs into snapshot contents and snapshot
// contents back into layer blobs. The Applier reads a layer from the content
// store, decompresses it, checks its uncompressed digest and applies it onto
// mounts; the Comparer writes the layer that turns one set of mounts into
// another into the content store. Differ does both over core/archive: it is
// the "walking" differ of containerd's plugin naming.
package diff

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/mount"
)

// LabelUncompressed is the content label holding a compressed layer's
// uncompressed digest (its diff ID), containerd's name for it.
const LabelUncompressed = "containerd.io/uncompressed"

// Applier applies layer blobs onto mounts.
type Applier interface {
	// Apply extracts the layer desc (read from the content store) onto
	// mounts and returns the descriptor of the uncompressed layer: media
	// type application/vnd.oci.image.layer.v1.tar, its digest (the diff ID)
	// and size. An unknown media type is errdefs.ErrNotImplemented; a diff
	// ID other than the one WithDiffID expects is
	// errdefs.ErrFailedPrecondition. On error the mounts hold a partly
	// applied layer: apply into a scratch snapshot and remove it.
	Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...ApplyOpt) (ocispec.Descriptor, error)
}

// Comparer writes diffs between mounts into the content store.
type Comparer interface {
	// Compare writes the layer that turns lower into upper, compressed as
	// the media type says, into the content store and returns its
	// descriptor. Empty lower means the whole of upper.
	Compare(ctx context.Context, lower, upper []mount.Mount, opts ...Opt) (ocispec.Descriptor, error)
}

// ApplyConfig is what ApplyOpts set.
type ApplyConfig struct {
	// DiffID, when set, is the uncompressed digest the layer must have.
	DiffID digest.Digest
	// Payloads are stream processor payloads (encrypted layers) by
	// processor name. berth has no stream processors: a layer whose media
	// type needs one is refused with errdefs.ErrNotImplemented.
	Payloads map[string]typeurl.Any
	// SyncFs flushes the filesystem holding the applied files before
	// Apply returns.
	SyncFs bool
}

// ApplyOpt sets an ApplyConfig field.
type ApplyOpt func(*ApplyConfig) error

// WithDiffID makes Apply verify the layer's uncompressed digest.
func WithDiffID(d digest.Digest) ApplyOpt {
	return func(c *ApplyConfig) error {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("expected diff ID %q: %v: %w", d, err, errdefs.ErrInvalidArgument)
		}
		c.DiffID = d
		return nil
	}
}

// WithPayloads passes stream processor payloads.
func WithPayloads(p map[string]typeurl.Any) ApplyOpt {
	return func(c *ApplyConfig) error {
		c.Payloads = p
		return nil
	}
}

// WithSyncFs makes Apply syncfs(2) the target filesystem.
func WithSyncFs(sync bool) ApplyOpt {
	return func(c *ApplyConfig) error {
		c.SyncFs = sync
		return nil
	}
}

// Config is what Opts set for Compare.
type Config struct {
	// MediaType of the layer to write; default
	// application/vnd.oci.image.layer.v1.tar+gzip.
	MediaType string
	// Reference names the content ingest, so a client can watch its
	// progress; default a unique name.
	Reference string
	// Labels go on the committed blob, beside containerd.io/uncompressed.
	Labels map[string]string
	// SourceDateEpoch, when set, clamps every entry's times to it and
	// dates whiteouts at the Unix epoch, for reproducible layers.
	SourceDateEpoch *time.Time
}

// Opt sets a Config field.
type Opt func(*Config) error

// WithMediaType chooses the layer media type, hence its compression.
func WithMediaType(mt string) Opt {
	return func(c *Config) error {
		c.MediaType = mt
		return nil
	}
}

// WithReference names the content ingest.
func WithReference(ref string) Opt {
	return func(c *Config) error {
		c.Reference = ref
		return nil
	}
}

// WithLabels adds labels to the committed blob.
func WithLabels(labels map[string]string) Opt {
	return func(c *Config) error {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		maps.Copy(c.Labels, labels)
		return nil
	}
}

// WithSourceDateEpoch clamps entry times to t.
func WithSourceDateEpoch(t *time.Time) Opt {
	return func(c *Config) error {
		c.SourceDateEpoch = t
		return nil
	}
}
