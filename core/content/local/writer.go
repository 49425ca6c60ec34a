package local

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/content"
)

var hashBufPool = sync.Pool{New: func() any {
	b := make([]byte, 1<<20)
	return &b
}}

// Writer opens the ingest named by WithRef, resuming it when it already
// has data: the data is re-hashed and writing continues at its end, so
// Status().Offset tells the caller where to resume its source. With
// WithDescriptor, a digest already committed is errdefs.ErrAlreadyExists
// at once, and an existing ingest recorded for a different size or digest
// (or longer than the size) is started over. A ref held by another writer
// is errdefs.ErrUnavailable at once.
func (s *Store) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var o content.WriterOpts
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.Ref == "" {
		return nil, fmt.Errorf("writer needs a ref: %w", errdefs.ErrInvalidArgument)
	}
	if o.Desc.Size < 0 {
		return nil, fmt.Errorf("ref %q: negative size %d: %w", o.Ref, o.Desc.Size, errdefs.ErrInvalidArgument)
	}
	if o.Desc.Digest != "" {
		p, err := s.blobPath(o.Desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("ref %q: %w", o.Ref, err)
		}
		if _, err := os.Stat(p); err == nil {
			return nil, fmt.Errorf("content %s: %w", o.Desc.Digest, errdefs.ErrAlreadyExists)
		}
	}
	if err := s.hold(o.Ref); err != nil {
		return nil, err
	}
	w, err := s.openIngest(o.Ref, o.Desc)
	if err != nil {
		s.release(o.Ref)
		return nil, err
	}
	return w, nil
}

func (s *Store) hold(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if since, ok := s.held[ref]; ok {
		return fmt.Errorf("ref %q is held by another writer since %s: %w",
			ref, since.Format(time.RFC3339), errdefs.ErrUnavailable)
	}
	s.held[ref] = time.Now()
	return nil
}

func (s *Store) release(ref string) {
	s.mu.Lock()
	delete(s.held, ref)
	s.mu.Unlock()
}

// openIngest creates or resumes ref's ingest folder and returns a writer
// positioned at its end. The caller holds ref in memory.
func (s *Store) openIngest(ref string, desc ocispec.Descriptor) (*writer, error) {
	dir := s.ingestDir(ref)
	err := os.Mkdir(dir, 0o755)
	existed := errors.Is(err, os.ErrExist)
	if err != nil && !existed {
		return nil, fmt.Errorf("create ingest for ref %q: %w", ref, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open ingest data for ref %q: %w", ref, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("ref %q is held by another process: %w", ref, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("lock ingest for ref %q: %w", ref, err)
	}
	alg := digest.Canonical
	if desc.Digest != "" {
		alg = desc.Digest.Algorithm()
	}
	w := &writer{s: s, f: f, dir: dir, ref: ref, alg: alg, hash: alg.Hash()}
	if existed {
		err = w.resume(desc)
	} else {
		err = w.start(desc)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// start (re)initialises the ingest as empty.
func (w *writer) start(desc ocispec.Descriptor) error {
	if err := w.f.Truncate(0); err != nil {
		return fmt.Errorf("reset ingest for ref %q: %w", w.ref, err)
	}
	now := time.Now()
	w.meta = ingestMeta{ref: w.ref, total: desc.Size, expected: desc.Digest, startedAt: now, updatedAt: now}
	w.offset = 0
	w.hash.Reset()
	if err := writeIngestMeta(w.dir, w.meta); err != nil {
		return fmt.Errorf("ref %q: %w", w.ref, err)
	}
	return nil
}

// resume continues an existing ingest when its record agrees with desc,
// re-hashing its data, and starts it over otherwise.
func (w *writer) resume(desc ocispec.Descriptor) error {
	m, err := readIngestMeta(w.dir)
	fi, serr := w.f.Stat()
	if serr != nil {
		return fmt.Errorf("stat ingest data for ref %q: %w", w.ref, serr)
	}
	reason := ""
	switch {
	case err != nil:
		reason = fmt.Sprintf("unreadable record: %v", err)
	case m.ref != w.ref:
		reason = fmt.Sprintf("folder records ref %q", m.ref)
	case desc.Size > 0 && m.total > 0 && desc.Size != m.total:
		reason = fmt.Sprintf("recorded size %d, now %d", m.total, desc.Size)
	case desc.Size > 0 && fi.Size() > desc.Size:
		reason = fmt.Sprintf("holds %d bytes, more than %d", fi.Size(), desc.Size)
	case desc.Digest != "" && m.expected != "" && desc.Digest != m.expected:
		reason = fmt.Sprintf("recorded digest %s, now %s", m.expected, desc.Digest)
	}
	if reason != "" {
		slog.Info("content: starting ingest over", "ref", w.ref, "reason", reason)
		return w.start(desc)
	}
	n, err := w.rehash(fi.Size())
	if err != nil {
		return fmt.Errorf("resume ingest for ref %q: %w", w.ref, err)
	}
	w.offset = n
	if _, err := w.f.Seek(w.offset, io.SeekStart); err != nil {
		return fmt.Errorf("resume ingest for ref %q: %w", w.ref, err)
	}
	// Learn what the earlier writer did not know.
	if m.total == 0 && desc.Size > 0 || m.expected == "" && desc.Digest != "" {
		m.total = max(m.total, desc.Size)
		if m.expected == "" {
			m.expected = desc.Digest
		}
		if err := writeIngestMeta(w.dir, m); err != nil {
			return fmt.Errorf("ref %q: %w", w.ref, err)
		}
	}
	w.meta = m
	return nil
}

// rehash resets the hash to the first n bytes of the data file and
// returns how many bytes were hashed.
func (w *writer) rehash(n int64) (int64, error) {
	w.hash.Reset()
	bp := hashBufPool.Get().(*[]byte)
	defer hashBufPool.Put(bp)
	return io.CopyBuffer(w.hash, io.NewSectionReader(w.f, 0, n), *bp)
}

// writer is one open ingest. It is not safe for concurrent use, like any
// io.Writer.
type writer struct {
	s      *Store
	f      *os.File // nil once committed or closed
	dir    string
	ref    string
	alg    digest.Algorithm
	hash   hash.Hash
	offset int64
	meta   ingestMeta
}

func (w *writer) Write(p []byte) (int, error) {
	if w.f == nil {
		return 0, fmt.Errorf("write to ref %q: writer is closed: %w", w.ref, errdefs.ErrFailedPrecondition)
	}
	var n int
	var err error
	if len(p) < parallelHashMin {
		n, err = w.f.Write(p)
		w.hash.Write(p[:n])
	} else {
		n, err = w.writeHashing(p)
	}
	w.offset += int64(n)
	w.meta.updatedAt = time.Now()
	return n, err
}

// parallelHashMin is the write size from which hashing runs beside the
// write system call: hashing and writing each take about half the time of
// a large ingest, so overlapping them nearly doubles throughput, while for
// small writes starting a goroutine would cost more than it saves.
const parallelHashMin = 128 << 10

func (w *writer) writeHashing(p []byte) (int, error) {
	hashed := make(chan struct{})
	go func() {
		w.hash.Write(p)
		close(hashed)
	}()
	n, err := w.f.Write(p)
	<-hashed
	if n < len(p) {
		// The hash has seen bytes the file did not take: rebuild it from
		// what is on disk so Digest and a later resume agree.
		if _, rerr := w.rehash(w.offset + int64(n)); rerr != nil {
			return n, errors.Join(err, rerr)
		}
	}
	return n, err
}

func (w *writer) Digest() digest.Digest {
	return digest.NewDigest(w.alg, w.hash)
}

func (w *writer) Status() (content.Status, error) {
	return content.Status{
		Ref:       w.ref,
		Offset:    w.offset,
		Total:     w.meta.total,
		Expected:  w.meta.expected,
		StartedAt: w.meta.startedAt,
		UpdatedAt: w.meta.updatedAt,
	}, nil
}

// Truncate cuts the ingest back to size bytes (any size up to the current
// offset) and re-hashes what is kept.
func (w *writer) Truncate(size int64) error {
	if w.f == nil {
		return fmt.Errorf("truncate ref %q: writer is closed: %w", w.ref, errdefs.ErrFailedPrecondition)
	}
	if size < 0 || size > w.offset {
		return fmt.Errorf("truncate ref %q to %d: outside 0..%d: %w", w.ref, size, w.offset, errdefs.ErrInvalidArgument)
	}
	if err := w.f.Truncate(size); err != nil {
		return fmt.Errorf("truncate ref %q: %w", w.ref, err)
	}
	if _, err := w.rehash(size); err != nil {
		return fmt.Errorf("truncate ref %q: %w", w.ref, err)
	}
	if _, err := w.f.Seek(size, io.SeekStart); err != nil {
		return fmt.Errorf("truncate ref %q: %w", w.ref, err)
	}
	w.offset = size
	w.meta.updatedAt = time.Now()
	return nil
}

// Close gives up the ref without committing; the ingest stays for a later
// Writer to resume. Data is synced so a resume after a crash finds it.
func (w *writer) Close() error {
	if w.f == nil {
		return nil
	}
	errSync := w.f.Sync()
	errMeta := os.WriteFile(filepath.Join(w.dir, "updatedat"),
		[]byte(w.meta.updatedAt.UTC().Format(time.RFC3339Nano)), 0o644)
	if errors.Is(errMeta, os.ErrNotExist) {
		errMeta = nil // aborted meanwhile: nothing left to record
	}
	errClose := w.finish()
	if err := errors.Join(errSync, errMeta, errClose); err != nil {
		return fmt.Errorf("close ref %q: %w", w.ref, err)
	}
	return nil
}

// finish closes the file and releases the ref.
func (w *writer) finish() error {
	err := w.f.Close()
	w.f = nil
	w.s.release(w.ref)
	return err
}

// Commit verifies the ingest and makes it a blob. Whatever the outcome the
// writer is closed and the ref released. On a size or digest mismatch
// (errdefs.ErrFailedPrecondition) nothing is stored and the ingest is kept,
// as containerd does, so it can be inspected, truncated or aborted. When
// the blob already exists the ingest is removed and errdefs.ErrAlreadyExists
// returned.
func (w *writer) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	if w.f == nil {
		return fmt.Errorf("commit ref %q: writer is closed: %w", w.ref, errdefs.ErrFailedPrecondition)
	}
	defer w.finish()
	var base content.Info
	for _, opt := range opts {
		if err := opt(&base); err != nil {
			return fmt.Errorf("commit ref %q: %w", w.ref, err)
		}
	}
	dgst, err := w.verify(size, expected)
	if err != nil {
		return err
	}
	// The blob's mtime is its CreatedAt: make it the commit time, not the
	// time of the last write, which may be an earlier attempt's.
	now := time.Now()
	tv := unix.NsecToTimeval(now.UnixNano())
	if err := unix.Futimes(int(w.f.Fd()), []unix.Timeval{tv, tv}); err != nil {
		return fmt.Errorf("commit ref %q: set times: %w", w.ref, err)
	}
	if err := w.f.Chmod(0o444); err != nil {
		return fmt.Errorf("commit ref %q: %w", w.ref, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit ref %q: sync data: %w", w.ref, err)
	}
	// The file stays open, locked and held until the ingest folder is gone:
	// after the link its data file is the blob itself, and a writer let in
	// early could resume into it and change a committed blob.
	if err := w.s.publish(w.dir, dgst); err != nil {
		return fmt.Errorf("commit ref %q: %w", w.ref, err)
	}
	if base.Labels != nil {
		w.s.mu.Lock()
		w.s.setLabelsLocked(dgst, base.Labels, now)
		w.s.mu.Unlock()
	}
	return nil
}

// verify checks the written data against size and expected and returns
// its digest, re-hashing the file when expected uses another algorithm.
func (w *writer) verify(size int64, expected digest.Digest) (digest.Digest, error) {
	if size > 0 && size != w.offset {
		return "", fmt.Errorf("commit ref %q: size is %d, expected %d: %w", w.ref, w.offset, size, errdefs.ErrFailedPrecondition)
	}
	dgst := w.Digest()
	if expected == "" {
		return dgst, nil
	}
	if err := expected.Validate(); err != nil {
		return "", fmt.Errorf("commit ref %q: expected digest %q: %v: %w", w.ref, expected, err, errdefs.ErrInvalidArgument)
	}
	if expected.Algorithm() != w.alg {
		w.alg, w.hash = expected.Algorithm(), expected.Algorithm().Hash()
		if _, err := w.rehash(w.offset); err != nil {
			return "", fmt.Errorf("commit ref %q: re-hash as %s: %w", w.ref, w.alg, err)
		}
		dgst = w.Digest()
	}
	if dgst != expected {
		return "", fmt.Errorf("commit ref %q: digest is %s, expected %s: %w", w.ref, dgst, expected, errdefs.ErrFailedPrecondition)
	}
	return dgst, nil
}

// publish moves the ingest's data into blobs/ under dgst and removes the
// ingest. A hard link is used so that of two ingests committing the same
// digest exactly one wins, atomically; the link is made durable by syncing
// the blob folder before the ingest is removed.
func (s *Store) publish(dir string, dgst digest.Digest) error {
	target, err := s.blobPath(dgst)
	if err != nil {
		return err
	}
	algDir := filepath.Dir(target)
	if err := os.Mkdir(algDir, 0o755); err == nil {
		if err := syncDir(filepath.Dir(algDir)); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", algDir, err)
	}
	data := filepath.Join(dir, "data")
	err = os.Link(data, target)
	switch {
	case errors.Is(err, os.ErrExist):
		s.removeIngest(dir)
		return fmt.Errorf("content %s: %w", dgst, errdefs.ErrAlreadyExists)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("ingest was aborted: %w", errdefs.ErrNotFound)
	case err != nil:
		// A file system without hard links: rename, accepting that a
		// concurrent commit of the same digest may replace identical bytes.
		if _, serr := os.Stat(target); serr == nil {
			s.removeIngest(dir)
			return fmt.Errorf("content %s: %w", dgst, errdefs.ErrAlreadyExists)
		}
		if err := os.Rename(data, target); err != nil {
			return fmt.Errorf("move ingest into blobs: %w", err)
		}
	}
	if err := syncDir(algDir); err != nil {
		return err
	}
	s.removeIngest(dir)
	return nil
}

// removeIngest deletes an ingest folder whose blob is safely stored; a
// failure only leaves a stale ingest behind, so it is logged, not returned.
func (s *Store) removeIngest(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		slog.Warn("content: cannot remove committed ingest", "path", dir, "error", err)
	}
}
