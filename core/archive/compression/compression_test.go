package compression

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/internal/testutil/require"
)

// sample returns n bytes that compress like typical layer content: words
// from a small vocabulary mixed with random bytes.
func sample(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"usr", "lib", "x86_64", "linux", "gnu", "share", "doc", "ELF", "\x00\x00\x00\x00", "libc.so.6", "copyright", "GPL"}
	var b bytes.Buffer
	for b.Len() < n {
		if rng.IntN(8) == 0 {
			var r [16]byte
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			b.Write(r[:])
			continue
		}
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

func compress(t testing.TB, data []byte, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := CompressStream(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := sample(3 << 20)
	for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			z := compress(t, data, c)
			if c != Uncompressed && len(z) >= len(data) {
				t.Fatalf("%v output %d bytes is not smaller than input %d", c, len(z), len(data))
			}
			rc, got, err := DecompressStream(bytes.NewReader(z))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if got != c {
				t.Fatalf("detected %v, want %v", got, c)
			}
			out, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("round trip of %v differs", c)
			}
		})
	}
}

func TestGzipImplementations(t *testing.T) {
	data := sample(1 << 20)
	z := compress(t, data, Gzip)
	for _, impl := range []GzipImpl{GzipKlauspost, GzipKlauspostAsync, GzipStdlib, GzipUnpigz} {
		t.Run(implName(impl), func(t *testing.T) {
			if impl == GzipUnpigz {
				require.Binary(t, "unpigz")
			}
			rc, err := NewGzipReader(bytes.NewReader(z), impl)
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if err := rc.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				t.Fatal("decompressed data differs")
			}

			// A corrupt body must surface as a read error, never as a
			// silently short stream.
			bad := bytes.Clone(z)
			for i := len(bad) / 2; i < len(bad)/2+64; i++ {
				bad[i] ^= 0x5a
			}
			rc, err = NewGzipReader(bytes.NewReader(bad), impl)
			if err != nil {
				return // rejected up front: fine
			}
			defer rc.Close()
			if _, err := io.ReadAll(rc); err == nil {
				t.Fatal("corrupt gzip stream read without error")
			}
		})
	}
}

func TestEarlyClose(t *testing.T) {
	z := compress(t, sample(8<<20), Gzip)
	for _, impl := range []GzipImpl{GzipKlauspostAsync, GzipUnpigz} {
		t.Run(implName(impl), func(t *testing.T) {
			if impl == GzipUnpigz {
				require.Binary(t, "unpigz")
			}
			earlyClose(t, z, impl)
		})
	}
}

func earlyClose(t *testing.T, z []byte, impl GzipImpl) {
	rc, err := NewGzipReader(bytes.NewReader(z), impl)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Read(buf); err == nil {
		t.Fatal("read after close succeeded")
	}
}

func TestTruncatedStreams(t *testing.T) {
	data := sample(1 << 20)
	for _, c := range []Compression{Gzip, Zstd} {
		z := compress(t, data, c)
		rc, _, err := DecompressStream(bytes.NewReader(z[:len(z)/2]))
		if err != nil {
			continue
		}
		_, err = io.ReadAll(rc)
		rc.Close()
		if err == nil {
			t.Errorf("truncated %v stream read without error", c)
		}
	}
}

func TestDetect(t *testing.T) {
	cases := []struct {
		in   []byte
		want Compression
	}{
		{nil, Uncompressed},
		{[]byte{0x1f}, Uncompressed},
		{[]byte{0x1f, 0x8b, 0x08, 0x00}, Gzip},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04}, Zstd},
		{[]byte{0x5e, 0x2a, 0x4d, 0x18, 0x00}, Zstd}, // skippable frame
		{[]byte("usr/\x00\x00\x00"), Uncompressed},
	}
	for _, tc := range cases {
		if got := Detect(tc.in); got != tc.want {
			t.Errorf("Detect(%x) = %v, want %v", tc.in, got, tc.want)
		}
	}
	// An empty stream is an empty uncompressed stream.
	rc, c, err := DecompressStream(bytes.NewReader(nil))
	if err != nil || c != Uncompressed {
		t.Fatalf("empty stream: %v %v", c, err)
	}
	if b, _ := io.ReadAll(rc); len(b) != 0 {
		t.Fatal("empty stream produced data")
	}
}

func TestMediaTypes(t *testing.T) {
	known := map[string]Compression{
		"application/vnd.oci.image.layer.v1.tar":                       Uncompressed,
		"application/vnd.oci.image.layer.v1.tar+gzip":                  Gzip,
		"application/vnd.oci.image.layer.v1.tar+zstd":                  Zstd,
		"application/vnd.oci.image.layer.nondistributable.v1.tar":      Uncompressed,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": Gzip,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": Zstd,
		"application/vnd.docker.image.rootfs.diff.tar.gzip":            Gzip,
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":    Gzip,
		"application/vnd.docker.image.rootfs.diff.tar.zstd":            Zstd,
		"application/vnd.oci.image.layer.v1.tar+gzip; foo=bar":         Gzip,
	}
	for mt, want := range known {
		got, err := FromMediaType(mt)
		if err != nil || got != want {
			t.Errorf("FromMediaType(%q) = %v, %v; want %v", mt, got, err, want)
		}
	}
	for _, mt := range []string{"application/vnd.oci.image.layer.v1.tar+gzip+encrypted", "application/vnd.oci.image.config.v1+json", ""} {
		_, err := FromMediaType(mt)
		if !errors.Is(err, errdefs.ErrNotImplemented) {
			t.Errorf("FromMediaType(%q) error %v, want ErrNotImplemented", mt, err)
		}
		if err != nil && mt != "" && !bytes.Contains([]byte(err.Error()), []byte(mt)) {
			t.Errorf("error %q does not name the media type", err)
		}
	}
	for _, f := range []Flavor{OCI, Docker} {
		for _, c := range []Compression{Uncompressed, Gzip, Zstd} {
			mt, err := MediaType(c, f)
			if err != nil {
				t.Fatal(err)
			}
			if back, err := FromMediaType(mt); err != nil || back != c {
				t.Errorf("MediaType(%v,%d)=%q maps back to %v, %v", c, f, mt, back, err)
			}
		}
	}
}

func implName(i GzipImpl) string {
	return map[GzipImpl]string{GzipKlauspost: "klauspost", GzipKlauspostAsync: "klauspost-async", GzipStdlib: "stdlib", GzipUnpigz: "unpigz"}[i]
}

// corpus returns n bytes of real layer-like content: the host's programs and
// libraries concatenated (what image layers mostly hold), padded with
// sample() if the host has too few.
func corpus(n int) []byte {
	var b bytes.Buffer
	for _, dir := range []string{"/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib"} {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || b.Len() >= n {
				return filepath.SkipDir
			}
			if d.Type().IsRegular() {
				if data, err := os.ReadFile(p); err == nil {
					b.Write(data)
				}
			}
			return nil
		})
	}
	if b.Len() < n {
		b.Write(sample(n - b.Len()))
	}
	return b.Bytes()[:n]
}

// BenchmarkGzipDecompress compares the gzip decompressors on 64 MiB of
// host binaries and libraries; SetBytes makes `go test -bench` report MB/s
// of decompressed output.
func BenchmarkGzipDecompress(b *testing.B) {
	data := corpus(64 << 20)
	z := compress(b, data, Gzip)
	buf := make([]byte, 1<<20)
	for _, impl := range []GzipImpl{GzipKlauspost, GzipKlauspostAsync, GzipStdlib, GzipUnpigz} {
		b.Run(implName(impl), func(b *testing.B) {
			if impl == GzipUnpigz {
				require.Binary(b, "unpigz")
			}
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				rc, err := NewGzipReader(bytes.NewReader(z), impl)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}

// BenchmarkZstdDecompress measures the zstd decoder as DecompressStream
// configures it.
func BenchmarkZstdDecompress(b *testing.B) {
	data := corpus(64 << 20)
	z := compress(b, data, Zstd)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		rc, _, err := DecompressStream(bytes.NewReader(z))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}
