package content

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// copyBufSize is large enough that a 200 MB blob is a few hundred write
// calls rather than thousands, small enough to pool cheaply.
const copyBufSize = 1 << 20

var copyBufPool = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}

// NewReader reads a ReaderAt sequentially from its start to its Size.
func NewReader(ra ReaderAt) io.Reader {
	return io.NewSectionReader(ra, 0, ra.Size())
}

// ReadBlob reads a whole blob into memory and verifies its digest. A
// descriptor larger than maxSize (or with a negative size) is refused with
// errdefs.ErrInvalidArgument before the provider is asked for anything, so an
// untrusted descriptor cannot make the caller allocate without bound. Inline
// desc.Data is used when it matches the descriptor.
func ReadBlob(ctx context.Context, provider Provider, desc ocispec.Descriptor, maxSize int64) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("descriptor digest %q: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if desc.Size < 0 {
		return nil, fmt.Errorf("blob %s has negative size %d: %w", desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	if desc.Size > maxSize {
		return nil, fmt.Errorf("blob %s is %d bytes, over the limit of %d bytes: %w",
			desc.Digest, desc.Size, maxSize, errdefs.ErrInvalidArgument)
	}
	if int64(len(desc.Data)) == desc.Size && len(desc.Data) > 0 && desc.Digest.Algorithm().FromBytes(desc.Data) == desc.Digest {
		return bytes.Clone(desc.Data), nil
	}
	ra, err := provider.ReaderAt(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	if ra.Size() != desc.Size {
		return nil, fmt.Errorf("blob %s is %d bytes in the store but the descriptor says %d: %w",
			desc.Digest, ra.Size(), desc.Size, errdefs.ErrFailedPrecondition)
	}
	buf := make([]byte, desc.Size)
	if _, err := io.ReadFull(io.NewSectionReader(ra, 0, desc.Size), buf); err != nil {
		return nil, fmt.Errorf("read blob %s: %w", desc.Digest, err)
	}
	if got := desc.Digest.Algorithm().FromBytes(buf); got != desc.Digest {
		return nil, fmt.Errorf("blob %s has digest %s: %w", desc.Digest, got, errdefs.ErrFailedPrecondition)
	}
	return buf, nil
}

// OpenWriter opens a writer like ingester.Writer, but while the ref is held
// by another writer (errdefs.ErrUnavailable) it waits with jittered,
// growing backoff until the ref is free or ctx ends. It returns
// errdefs.ErrAlreadyExists when the other writer committed the expected
// blob meanwhile.
func OpenWriter(ctx context.Context, ingester Ingester, opts ...WriterOpt) (Writer, error) {
	backoff := 8 * time.Millisecond
	for {
		w, err := ingester.Writer(ctx, opts...)
		if !errors.Is(err, errdefs.ErrUnavailable) {
			return w, err
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for ingest: %w (%w)", err, ctx.Err())
		}
		backoff = min(2*backoff, time.Second)
	}
}

// WriteBlob writes r into the ingest ref and commits it as desc (size and
// digest verified). An ingest already holding data is resumed at its
// offset: r is seeked there when it is an io.Seeker, otherwise the bytes
// before the offset are read and discarded. If a resumed write fails
// verification and r can seek, the ingest is truncated and written once
// more from the start, since the data kept from an earlier attempt may be
// what was wrong. A blob that already exists is success.
func WriteBlob(ctx context.Context, ingester Ingester, ref string, r io.Reader, desc ocispec.Descriptor, opts ...Opt) error {
	resumed, err := writeBlobOnce(ctx, ingester, ref, r, desc, false, opts)
	if err == nil || !resumed || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		return err
	}
	if _, ok := r.(io.Seeker); !ok {
		return err
	}
	_, err = writeBlobOnce(ctx, ingester, ref, r, desc, true, opts)
	return err
}

func writeBlobOnce(ctx context.Context, ingester Ingester, ref string, r io.Reader, desc ocispec.Descriptor, restart bool, opts []Opt) (resumed bool, err error) {
	w, err := OpenWriter(ctx, ingester, WithRef(ref), WithDescriptor(desc))
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open writer for %s: %w", ref, err)
	}
	defer w.Close()
	if restart {
		if err := w.Truncate(0); err != nil {
			return false, fmt.Errorf("restart ingest %s: %w", ref, err)
		}
		if _, err := r.(io.Seeker).Seek(0, io.SeekStart); err != nil {
			return false, fmt.Errorf("restart ingest %s: rewind source: %w", ref, err)
		}
	}
	return copyResume(ctx, w, r, desc.Size, desc.Digest, opts)
}

// Copy writes r into w and commits it, verifying size and expected (either
// may be zero to skip that check). When w already holds data, r is first
// advanced to w's offset (seeking or discarding); when w holds more than
// size bytes it is truncated and written from the start. Reading more than
// size bytes from r fails without committing. errdefs.ErrAlreadyExists from
// Commit is success. Copy does not close w.
func Copy(ctx context.Context, w Writer, r io.Reader, size int64, expected digest.Digest, opts ...Opt) error {
	_, err := copyResume(ctx, w, r, size, expected, opts)
	return err
}

func copyResume(ctx context.Context, w Writer, r io.Reader, size int64, expected digest.Digest, opts []Opt) (resumed bool, err error) {
	st, err := w.Status()
	if err != nil {
		return false, fmt.Errorf("ingest status: %w", err)
	}
	offset := st.Offset
	if size > 0 && offset > size {
		if err := w.Truncate(0); err != nil {
			return false, fmt.Errorf("ingest %s holds %d bytes, more than %d, and cannot be reset: %w", st.Ref, offset, size, err)
		}
		offset = 0
	}
	if offset > 0 {
		if err := skipTo(r, offset); err != nil {
			return false, fmt.Errorf("resume ingest %s at offset %d: %w", st.Ref, offset, err)
		}
	}
	if err := copyBounded(ctx, w, r, size, offset); err != nil {
		return offset > 0, fmt.Errorf("write ingest %s: %w", st.Ref, err)
	}
	if err := w.Commit(ctx, size, expected, opts...); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
		return offset > 0, fmt.Errorf("commit ingest %s: %w", st.Ref, err)
	}
	return offset > 0, nil
}

// skipTo advances r by offset bytes.
func skipTo(r io.Reader, offset int64) error {
	if s, ok := r.(io.Seeker); ok {
		n, err := s.Seek(offset, io.SeekStart)
		if err != nil {
			return fmt.Errorf("seek: %w", err)
		}
		if n != offset {
			return fmt.Errorf("seek landed at %d", n)
		}
		return nil
	}
	n, err := io.CopyN(io.Discard, r, offset)
	if err != nil {
		return fmt.Errorf("skipped only %d bytes: %w", n, err)
	}
	return nil
}

// copyBounded copies r to w. With size > 0 it expects exactly size-offset
// more bytes: a short stream is io.ErrUnexpectedEOF and a longer one is
// errdefs.ErrFailedPrecondition, detected after at most one extra byte so an
// endless source cannot fill the disk.
func copyBounded(ctx context.Context, w io.Writer, r io.Reader, size, offset int64) error {
	if size <= 0 {
		_, err := copyBuffer(ctx, w, r)
		return err
	}
	want := size - offset
	n, err := copyBuffer(ctx, w, io.LimitReader(r, want+1))
	if err != nil {
		return err
	}
	if n > want {
		return fmt.Errorf("source has more than the expected %d bytes: %w", size, errdefs.ErrFailedPrecondition)
	}
	if n < want {
		return fmt.Errorf("short read: got %d of %d bytes: %w", offset+n, size, io.ErrUnexpectedEOF)
	}
	return nil
}

// copyBuffer copies with a pooled 1 MiB buffer, checking ctx between
// chunks so a cancelled pull stops promptly.
func copyBuffer(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var written int64
	for {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		nr, rerr := io.ReadAtLeast(r, buf, len(buf))
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nw != nr {
				return written, io.ErrShortWrite
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}
