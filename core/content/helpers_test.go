package content_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
)

func newStore(t *testing.T) *local.Store {
	t.Helper()
	s, err := local.NewStore(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func descOf(b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// countingReader counts the bytes read through it; it hides any Seek
// method so the helpers must discard to resume.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// countingSeeker is a countingReader that can seek.
type countingSeeker struct {
	*countingReader
	s io.Seeker
}

func (c countingSeeker) Seek(off int64, whence int) (int64, error) { return c.s.Seek(off, whence) }

func newCountingSeeker(b []byte) countingSeeker {
	br := bytes.NewReader(b)
	return countingSeeker{&countingReader{r: br}, br}
}

// partialIngest leaves an ingest for ref holding prefix.
func partialIngest(t *testing.T, s *local.Store, ref string, desc ocispec.Descriptor, prefix []byte) {
	t.Helper()
	w, err := s.Writer(context.Background(), content.WithRef(ref), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(prefix); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWriteBlobAndReadBlob(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 100000)
	desc := descOf(data)
	if err := content.WriteBlob(ctx, s, "w", bytes.NewReader(data), desc, content.WithLabels(map[string]string{"k": "v"})); err != nil {
		t.Fatal(err)
	}
	got, err := content.ReadBlob(ctx, s, desc, desc.Size)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("ReadBlob returned other bytes")
	}
	if info, _ := s.Info(ctx, desc.Digest); info.Labels["k"] != "v" {
		t.Errorf("WriteBlob dropped the commit options: %+v", info)
	}
	// Writing it again is success without reading the source.
	src := &countingReader{r: bytes.NewReader(data)}
	if err := content.WriteBlob(ctx, s, "w2", src, desc); err != nil {
		t.Fatal(err)
	}
	if src.n != 0 {
		t.Errorf("WriteBlob of an existing blob read %d bytes", src.n)
	}
}

func TestWriteBlobResumes(t *testing.T) {
	ctx := context.Background()
	data := randomBytes(t, 300000)
	desc := descOf(data)
	const have = 120000

	t.Run("seeker", func(t *testing.T) {
		s := newStore(t)
		partialIngest(t, s, "r", desc, data[:have])
		src := newCountingSeeker(data)
		if err := content.WriteBlob(ctx, s, "r", src, desc); err != nil {
			t.Fatal(err)
		}
		if src.n != desc.Size-have {
			t.Errorf("read %d bytes, want only the missing %d", src.n, desc.Size-have)
		}
		if got, _ := content.ReadBlob(ctx, s, desc, desc.Size); !bytes.Equal(got, data) {
			t.Fatal("resumed blob differs")
		}
	})
	t.Run("discard", func(t *testing.T) {
		s := newStore(t)
		partialIngest(t, s, "r", desc, data[:have])
		src := &countingReader{r: bytes.NewReader(data)}
		if err := content.WriteBlob(ctx, s, "r", src, desc); err != nil {
			t.Fatal(err)
		}
		if src.n != desc.Size {
			t.Errorf("read %d bytes, want the whole %d (prefix discarded)", src.n, desc.Size)
		}
		if got, _ := content.ReadBlob(ctx, s, desc, desc.Size); !bytes.Equal(got, data) {
			t.Fatal("resumed blob differs")
		}
	})
	t.Run("corrupt prefix, seeker restarts", func(t *testing.T) {
		s := newStore(t)
		partialIngest(t, s, "r", desc, randomBytes(t, have))
		if err := content.WriteBlob(ctx, s, "r", bytes.NewReader(data), desc); err != nil {
			t.Fatalf("WriteBlob over a corrupt ingest: %v", err)
		}
		if got, _ := content.ReadBlob(ctx, s, desc, desc.Size); !bytes.Equal(got, data) {
			t.Fatal("blob differs")
		}
	})
	t.Run("corrupt prefix, stream fails", func(t *testing.T) {
		s := newStore(t)
		partialIngest(t, s, "r", desc, randomBytes(t, have))
		err := content.WriteBlob(ctx, s, "r", &countingReader{r: bytes.NewReader(data)}, desc)
		if !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("got %v, want ErrFailedPrecondition", err)
		}
		if _, err := s.Info(ctx, desc.Digest); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("corrupt blob stored: %v", err)
		}
	})
}

func TestCopyChecksSizes(t *testing.T) {
	ctx := context.Background()
	data := randomBytes(t, 5000)
	desc := descOf(data)
	for _, tc := range []struct {
		name string
		src  []byte
		want error
	}{
		{"longer", append(bytes.Clone(data), 'x'), errdefs.ErrFailedPrecondition},
		{"shorter", data[:4000], io.ErrUnexpectedEOF},
		{"other bytes", randomBytes(t, 5000), errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			w, err := s.Writer(ctx, content.WithRef("c"), content.WithDescriptor(desc))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			err = content.Copy(ctx, w, bytes.NewReader(tc.src), desc.Size, desc.Digest)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Copy: got %v, want %v", err, tc.want)
			}
			if _, err := s.Info(ctx, desc.Digest); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("blob stored despite %s source: %v", tc.name, err)
			}
		})
	}
}

func TestCopyTruncatesOverlongIngest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 1000)
	desc := descOf(data)
	// An ingest opened without a descriptor can grow past the blob's size.
	partialIngest(t, s, "long", ocispec.Descriptor{}, randomBytes(t, 1500))
	w, err := s.Writer(ctx, content.WithRef("long"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := content.Copy(ctx, w, bytes.NewReader(data), desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	if got, _ := content.ReadBlob(ctx, s, desc, desc.Size); !bytes.Equal(got, data) {
		t.Fatal("blob differs")
	}
}

func TestCopyStopsOnCancel(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w, err := s.Writer(context.Background(), content.WithRef("cancel"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = content.Copy(ctx, w, bytes.NewReader(randomBytes(t, 10)), 10, "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Copy with a cancelled context: %v", err)
	}
}

func TestReadBlobRefusesOversizeBeforeReading(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	// The digest names nothing in the store: had ReadBlob asked the
	// provider, the answer would be ErrNotFound.
	desc := ocispec.Descriptor{Digest: digest.FromString("huge"), Size: 1 << 40}
	_, err := content.ReadBlob(ctx, s, desc, 4<<20)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("got %v, want ErrInvalidArgument", err)
	}
	for _, want := range []string{desc.Digest.String(), "1099511627776", "4194304"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	_, err = content.ReadBlob(ctx, s, ocispec.Descriptor{Digest: desc.Digest, Size: -1}, 10)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("negative size: %v", err)
	}
	_, err = content.ReadBlob(ctx, s, ocispec.Descriptor{Digest: "sha256:../x", Size: 1}, 10)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad digest: %v", err)
	}
	// Within the limit the provider is asked, and says not found.
	_, err = content.ReadBlob(ctx, s, ocispec.Descriptor{Digest: desc.Digest, Size: 10}, 10)
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("absent blob: %v", err)
	}
}

func TestReadBlobVerifies(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 4096)
	desc := descOf(data)
	if err := content.WriteBlob(ctx, s, "v", bytes.NewReader(data), desc); err != nil {
		t.Fatal(err)
	}
	lying := desc
	lying.Size = 4000
	if _, err := content.ReadBlob(ctx, s, lying, 1<<20); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("descriptor with the wrong size: %v", err)
	}
	// Corrupt the stored blob behind the store's back.
	blob := filepath.Join(s.Root(), "blobs", "sha256", desc.Digest.Encoded())
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, randomBytes(t, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := content.ReadBlob(ctx, s, desc, 1<<20)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), desc.Digest.String()) {
		t.Errorf("corrupt blob: %v", err)
	}
}

func TestReadBlobInlineData(t *testing.T) {
	s := newStore(t)
	data := []byte(`{"schemaVersion":2}`)
	desc := descOf(data)
	desc.Data = data
	got, err := content.ReadBlob(context.Background(), s, desc, 100)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("inline data: %q, %v", got, err)
	}
	// Inline data that does not match is ignored, and the store consulted.
	desc.Data = []byte(`{"schemaVersion":3}`)
	if _, err := content.ReadBlob(context.Background(), s, desc, 100); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("mismatched inline data: %v", err)
	}
}

func TestOpenWriterWaitsForHeldRef(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 1000)
	desc := descOf(data)
	w, err := s.Writer(ctx, content.WithRef("held"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		w2, err := content.OpenWriter(ctx, s, content.WithRef("held"), content.WithDescriptor(desc))
		if err == nil {
			w2.Close()
		}
		done <- err
	}()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("waiting OpenWriter: got %v, want ErrAlreadyExists once the first writer committed", err)
	}

	w, err = s.Writer(ctx, content.WithRef("held2"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = content.OpenWriter(tctx, s, content.WithRef("held2"))
	if !errors.Is(err, errdefs.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("OpenWriter past its deadline: %v", err)
	}
}

func TestNewReader(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 3<<20+5)
	desc := descOf(data)
	if err := content.WriteBlob(ctx, s, "nr", bytes.NewReader(data), desc); err != nil {
		t.Fatal(err)
	}
	ra, err := s.ReaderAt(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	got, err := io.ReadAll(content.NewReader(ra))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("NewReader read %d bytes, %v", len(got), err)
	}
}
