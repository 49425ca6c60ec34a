package local

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
)

const benchBlobSize = 200 << 20

// patternReader streams size bytes by repeating a random 1 MiB chunk, so
// the benchmark measures the store rather than a 200 MB buffer.
type patternReader struct {
	chunk []byte
	left  int64
	pos   int
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(int64(len(p)), r.left)], r.chunk[r.pos:])
	r.pos = (r.pos + n) % len(r.chunk)
	r.left -= int64(n)
	return n, nil
}

func benchBlob(b *testing.B) (chunk []byte, desc ocispec.Descriptor) {
	chunk = randomBytes(b, 1<<20)
	h := sha256.New()
	for range benchBlobSize / len(chunk) {
		h.Write(chunk)
	}
	return chunk, ocispec.Descriptor{Digest: digest.NewDigest(digest.SHA256, h), Size: benchBlobSize}
}

// BenchmarkWriteCommit200MB streams a 200 MB blob through a writer and
// commits it (fsync included); MB/s is the figure to watch.
func BenchmarkWriteCommit200MB(b *testing.B) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "b-content-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := NewStore(filepath.Join(dir, "content"))
	if err != nil {
		b.Fatal(err)
	}
	chunk, desc := benchBlob(b)
	b.SetBytes(benchBlobSize)
	b.ResetTimer()
	for b.Loop() {
		w, err := s.Writer(ctx, content.WithRef("bench"), content.WithDescriptor(desc))
		if err != nil {
			b.Fatal(err)
		}
		if err := content.Copy(ctx, w, &patternReader{chunk: chunk, left: benchBlobSize}, desc.Size, desc.Digest); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Delete(ctx, desc.Digest); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkRead200MB reads a committed 200 MB blob back sequentially,
// with and without verifying its digest.
func BenchmarkRead200MB(b *testing.B) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "b-content-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := NewStore(filepath.Join(dir, "content"))
	if err != nil {
		b.Fatal(err)
	}
	chunk, desc := benchBlob(b)
	if err := content.WriteBlob(ctx, s, "bench", &patternReader{chunk: chunk, left: benchBlobSize}, desc); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for _, verify := range []bool{false, true} {
		name := "raw"
		if verify {
			name = "verified"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(benchBlobSize)
			for b.Loop() {
				ra, err := s.ReaderAt(ctx, desc)
				if err != nil {
					b.Fatal(err)
				}
				var dst io.Writer = io.Discard
				v := desc.Digest.Verifier()
				if verify {
					dst = v
				}
				if _, err := io.CopyBuffer(dst, content.NewReader(ra), buf); err != nil {
					b.Fatal(err)
				}
				ra.Close()
				if verify && !v.Verified() {
					b.Fatal("digest mismatch")
				}
			}
		})
	}
}
