// Package local is berth's content store on a local directory.
//
// Layout under the root:
//
//	blobs/<algorithm>/<hex>   committed blobs, read-only files
//	ingest/<sha256(ref)>/     one folder per ingest in progress, holding
//	    data                  the bytes written so far
//	    ref                   the ingest's ref
//	    total                 expected size, when known
//	    expected              expected digest, when known
//	    startedat, updatedat  RFC 3339 timestamps
//
// Only these two folders are ever written. Digests are validated (known
// algorithm, exact hex length and alphabet) before they become paths, and
// refs are hashed into folder names, so no input can name a path outside
// the root.
//
// Labels live in memory only: Commit (WithLabels) and Update set them, Info
// and Walk report them, and they are gone when the Store is dropped. The
// durable, namespaced labels that garbage collection follows are kept by
// the metadata layer (core/metadata) in bbolt; this store only needs to
// answer for the bytes. Likewise UpdatedAt is the last in-memory label
// change, or the commit time.
//
// A ref is held by one Writer at a time. Another Writer call for a held ref
// fails at once with errdefs.ErrUnavailable rather than blocking, like
// containerd; callers that want to wait use content.OpenWriter. The hold is
// an in-memory table (so the error can say since when) plus an exclusive
// flock on the ingest's data file, which also keeps a second process
// opening the same root off the ingest and is dropped by the kernel if the
// holder dies.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/filters"
)

// Store is a content.Store on a local directory. It is safe for concurrent
// use.
type Store struct {
	root string

	mu     sync.Mutex
	held   map[string]time.Time          // refs with an open writer, since when
	labels map[digest.Digest]labelRecord // in-memory labels, see package doc
}

type labelRecord struct {
	labels  map[string]string
	updated time.Time
}

var _ content.Store = (*Store)(nil)

// NewStore opens (creating if needed) a store rooted at root. Ingests left
// by an earlier Store on the same root are kept and can be resumed.
func NewStore(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("content store root %q: %w", root, err)
	}
	for _, dir := range []string{abs, filepath.Join(abs, "blobs"), filepath.Join(abs, "ingest")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create content store folder: %w", err)
		}
	}
	return &Store{
		root:   abs,
		held:   map[string]time.Time{},
		labels: map[digest.Digest]labelRecord{},
	}, nil
}

// Root is the folder the store lives in.
func (s *Store) Root() string { return s.root }

// blobPath turns a digest into its blob path, refusing anything that is
// not a well-formed digest of an available algorithm.
func (s *Store) blobPath(dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil {
		return "", fmt.Errorf("digest %q: %v: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(s.root, "blobs", dgst.Algorithm().String(), dgst.Encoded()), nil
}

// ingestDir is the folder of ref's ingest. Hashing keeps any ref, however
// crafted, a single safe path component.
func (s *Store) ingestDir(ref string) string {
	return filepath.Join(s.root, "ingest", digest.SHA256.FromString(ref).Encoded())
}

// Info reports a committed blob's size, times and in-memory labels.
func (s *Store) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	p, err := s.blobPath(dgst)
	if err != nil {
		return content.Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return content.Info{}, blobErr(dgst, err)
	}
	return s.info(dgst, fi), nil
}

func (s *Store) info(dgst digest.Digest, fi fs.FileInfo) content.Info {
	info := content.Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime(), UpdatedAt: fi.ModTime()}
	s.mu.Lock()
	if rec, ok := s.labels[dgst]; ok {
		info.Labels = maps.Clone(rec.labels)
		info.UpdatedAt = rec.updated
	}
	s.mu.Unlock()
	return info
}

func blobErr(dgst digest.Digest, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("content %s: %w", dgst, errdefs.ErrNotFound)
	}
	return fmt.Errorf("content %s: %w", dgst, err)
}

// Update changes a blob's in-memory labels. Field paths: "labels" replaces
// all labels, "labels.<key>" sets one key (an empty value removes it); no
// field paths replaces all labels. Other fields are ErrInvalidArgument.
func (s *Store) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	p, err := s.blobPath(info.Digest)
	if err != nil {
		return content.Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return content.Info{}, blobErr(info.Digest, err)
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	for _, fp := range fieldpaths {
		if fp != "labels" && !strings.HasPrefix(fp, "labels.") {
			return content.Info{}, fmt.Errorf("cannot update field %q of content %s: %w", fp, info.Digest, errdefs.ErrInvalidArgument)
		}
	}
	s.mu.Lock()
	labels := maps.Clone(s.labels[info.Digest].labels)
	for _, fp := range fieldpaths {
		if fp == "labels" {
			labels = maps.Clone(info.Labels)
			continue
		}
		key := strings.TrimPrefix(fp, "labels.")
		if v := info.Labels[key]; v != "" {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[key] = v
		} else {
			delete(labels, key)
		}
	}
	s.setLabelsLocked(info.Digest, labels, time.Now())
	s.mu.Unlock()
	return s.info(info.Digest, fi), nil
}

func (s *Store) setLabelsLocked(dgst digest.Digest, labels map[string]string, now time.Time) {
	if len(labels) == 0 {
		// Keep the update time even without labels so UpdatedAt moves.
		labels = nil
	}
	s.labels[dgst] = labelRecord{labels: labels, updated: now}
}

// Walk calls fn for each committed blob matching any of filters (fields
// "digest", "size", "labels.<key>"). Files in blobs/ that are not valid
// digests are skipped. fn may call back into the store.
func (s *Store) Walk(ctx context.Context, fn content.WalkFunc, fs ...string) error {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return fmt.Errorf("walk content: %w", err)
	}
	blobs := filepath.Join(s.root, "blobs")
	algs, err := os.ReadDir(blobs)
	if err != nil {
		return fmt.Errorf("walk content: %w", err)
	}
	for _, a := range algs {
		alg := digest.Algorithm(a.Name())
		if !a.IsDir() || !alg.Available() {
			continue
		}
		if err := s.walkAlgorithm(ctx, filepath.Join(blobs, a.Name()), alg, filter, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) walkAlgorithm(ctx context.Context, dir string, alg digest.Algorithm, filter filters.Filter, fn content.WalkFunc) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("walk content: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		dgst := digest.NewDigestFromEncoded(alg, e.Name())
		if !e.Type().IsRegular() || dgst.Validate() != nil {
			slog.Debug("content walk: skipping foreign file", "path", filepath.Join(dir, e.Name()))
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // deleted while walking
		}
		info := s.info(dgst, fi)
		if !filter.Match(content.AdaptInfo(info)) {
			continue
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a committed blob and its labels.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	p, err := s.blobPath(dgst)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return blobErr(dgst, err)
	}
	s.mu.Lock()
	delete(s.labels, dgst)
	s.mu.Unlock()
	return nil
}

// ReaderAt opens a committed blob for random reads.
func (s *Store) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	p, err := s.blobPath(desc.Digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, blobErr(desc.Digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, blobErr(desc.Digest, err)
	}
	return &blobReader{f: f, size: fi.Size()}, nil
}

// blobReader is an open blob; ReadAt is a plain pread, safe for concurrent
// use.
type blobReader struct {
	f    *os.File
	size int64
}

func (r *blobReader) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *blobReader) Size() int64                             { return r.size }
func (r *blobReader) Close() error                            { return r.f.Close() }

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s for sync: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
