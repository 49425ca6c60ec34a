package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berthd/berth/core/archive/compression"
)

// benchLayer writes, once per test binary, a ~100 MiB layer shaped like a
// distribution image: 200 directories, ~6000 small and medium files, a few
// large ones, symlinks and hard links.
var benchLayer = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "berth-archive-bench-")
	if err != nil {
		return "", err
	}
	benchDir = dir
	path := filepath.Join(dir, "layer.tar")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(rng.Uint32() >> (rng.IntN(4) * 8))
	}
	write := func(hdr *tar.Header, n int) error {
		hdr.Size, hdr.Mode, hdr.ModTime = int64(n), 0o644, testTime
		if hdr.Typeflag == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		for n > 0 {
			c := min(n, len(data))
			off := rng.IntN(len(data) - c + 1)
			if _, err := tw.Write(data[off : off+c]); err != nil {
				return err
			}
			n -= c
		}
		return nil
	}
	total := 0
	for d := 0; d < 200; d++ {
		dname := fmt.Sprintf("usr/share/pkg%03d/", d)
		if err := write(&tar.Header{Typeflag: tar.TypeDir, Name: dname}, 0); err != nil {
			return "", err
		}
		for i := 0; i < 30; i++ {
			size := 512 + rng.IntN(8<<10)
			if i%10 == 0 {
				size = 64<<10 + rng.IntN(256<<10)
			}
			name := fmt.Sprintf("%sfile%02d", dname, i)
			if err := write(&tar.Header{Typeflag: tar.TypeReg, Name: name}, size); err != nil {
				return "", err
			}
			total += size
		}
		if err := write(&tar.Header{Typeflag: tar.TypeSymlink, Name: dname + "link", Linkname: "file00"}, 0); err != nil {
			return "", err
		}
		if err := write(&tar.Header{Typeflag: tar.TypeLink, Name: dname + "hard", Linkname: dname + "file01"}, 0); err != nil {
			return "", err
		}
	}
	for i := 0; total < 100<<20; i++ {
		size := 8 << 20
		if err := write(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("opt/big%02d", i)}, size); err != nil {
			return "", err
		}
		total += size
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	return path, bw.Flush()
})

// benchDir holds the generated layer, if a benchmark made it.
var benchDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// extractLoop runs extract into a fresh directory per iteration; removing it
// is not timed.
func extractLoop(b *testing.B, extract func(dst string) error) {
	layer, err := benchLayer()
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(layer)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	// BERTH_BENCH_DIR (say /dev/shm) takes the disk out of the figures to
	// compare CPU cost alone.
	base := b.TempDir()
	if d := os.Getenv("BERTH_BENCH_DIR"); d != "" {
		var err error
		if base, err = os.MkdirTemp(d, "bench-"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(base)
	}
	i := 0
	for b.Loop() {
		b.StopTimer()
		dst := filepath.Join(base, fmt.Sprint(i))
		i++
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := extract(dst); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

// BenchmarkApply extracts the generated layer with Apply.
func BenchmarkApply(b *testing.B) {
	layer, _ := benchLayer()
	extractLoop(b, func(dst string) error {
		f, err := os.Open(layer)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = Apply(context.Background(), dst, f)
		return err
	})
}

// BenchmarkTarX extracts the same layer with GNU tar, the baseline.
func BenchmarkTarX(b *testing.B) {
	if _, err := exec.LookPath("tar"); err != nil {
		b.Skip("needs tar")
	}
	layer, _ := benchLayer()
	extractLoop(b, func(dst string) error {
		out, err := exec.Command("tar", "--numeric-owner", "-xf", layer, "-C", dst).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tar -x: %v: %s", err, out)
		}
		return nil
	})
}

// BenchmarkApplyCompressed measures the real pull path, decompression and
// Apply together, for each gzip implementation and for zstd. unpigz and the
// zstd decoder run beside the extraction; in-process gzip inflates in line.
func BenchmarkApplyCompressed(b *testing.B) {
	layer, err := benchLayer()
	if err != nil {
		b.Fatal(err)
	}
	compressed := map[compression.Compression]string{}
	for _, c := range []compression.Compression{compression.Gzip, compression.Zstd} {
		p := layer + c.Extension()
		if err := compressFile(layer, p, c); err != nil {
			b.Fatal(err)
		}
		defer os.Remove(p)
		compressed[c] = p
	}
	run := func(name, path string, open func(io.Reader) (io.ReadCloser, error)) {
		b.Run(name, func(b *testing.B) {
			extractLoop(b, func(dst string) error {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				defer f.Close()
				rc, err := open(f)
				if err != nil {
					return err
				}
				defer rc.Close()
				_, err = Apply(context.Background(), dst, rc)
				return err
			})
		})
	}
	for name, impl := range map[string]compression.GzipImpl{"gzip-klauspost": compression.GzipKlauspost, "gzip-klauspost-async": compression.GzipKlauspostAsync, "gzip-stdlib": compression.GzipStdlib, "gzip-unpigz": compression.GzipUnpigz} {
		if impl == compression.GzipUnpigz {
			if _, err := exec.LookPath("unpigz"); err != nil {
				continue
			}
		}
		run(name, compressed[compression.Gzip], func(r io.Reader) (io.ReadCloser, error) { return compression.NewGzipReader(r, impl) })
	}
	run("zstd", compressed[compression.Zstd], func(r io.Reader) (io.ReadCloser, error) {
		rc, _, err := compression.DecompressStream(r)
		return rc, err
	})
}

func compressFile(src, dst string, c compression.Compression) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	w, err := compression.CompressStream(out, c)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, in); err != nil {
		return err
	}
	return w.Close()
}

// benchTree applies the generated layer into a directory for the export
// benchmarks and removes it when b ends.
func benchTree(b *testing.B) string {
	layer, err := benchLayer()
	if err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(layer)
	b.SetBytes(st.Size())
	dir := b.TempDir()
	f, err := os.Open(layer)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := Apply(context.Background(), dir, f); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkWriteDiff exports the applied layer (empty lower), the work of
// `berth export` and of committing a fresh container.
func BenchmarkWriteDiff(b *testing.B) {
	dir := benchTree(b)
	for b.Loop() {
		if err := WriteDiff(context.Background(), io.Discard, "", dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTarC archives the same tree with GNU tar, the baseline. Its
// output goes through a pipe: tar skips reading files when writing straight
// to /dev/null.
func BenchmarkTarC(b *testing.B) {
	if _, err := exec.LookPath("tar"); err != nil {
		b.Skip("needs tar")
	}
	dir := benchTree(b)
	for b.Loop() {
		cmd := exec.Command("tar", "--numeric-owner", "-cf", "-", "-C", dir, ".")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("tar -c: %v: %s", err, stderr.String())
		}
	}
}
