package archive_test

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berthd/berth/core/images/archive"
	"github.com/berthd/berth/integration/testimages"
)

// benchDir holds the benchmark archive, made once per test binary run and
// removed by TestMain.
var (
	benchOnce sync.Once
	benchDir  string
	benchPath string
	benchErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchArchive is a ~200 MB OCI archive of a 6-layer gzip image with
// realistic content (testimages.GenerateBench, 400 MiB of files).
func benchArchive(b *testing.B) string {
	b.Helper()
	needBusybox(b)
	benchOnce.Do(func() {
		if benchDir, benchErr = os.MkdirTemp("", "berth-archive-bench-"); benchErr != nil {
			return
		}
		layout := filepath.Join(benchDir, "layout")
		if _, benchErr = testimages.GenerateBench(layout, testimages.BenchSpec{Layers: 6, Size: 400 << 20, Busybox: true}); benchErr != nil {
			return
		}
		benchPath = filepath.Join(benchDir, "bench.tar")
		benchErr = testimages.SaveFile(benchPath, func(w io.Writer) error { return testimages.WriteLayoutArchive(w, layout) })
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPath
}

// BenchmarkImport imports the benchmark archive from a file into an
// empty store (metadata over a local content store).
func BenchmarkImport(b *testing.B) {
	p := benchArchive(b)
	fi, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		dir, err := os.MkdirTemp(benchDir, "store-")
		if err != nil {
			b.Fatal(err)
		}
		e, closeEnv := openEnv(b, dir)
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		_, err = archive.Import(e.ctx, e.cs, e.is, e.db.Leases(), f, archive.ImportOptions{})
		b.StopTimer()
		f.Close()
		closeEnv()
		os.RemoveAll(dir)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExport exports the imported benchmark image to nowhere.
func BenchmarkExport(b *testing.B) {
	p := benchArchive(b)
	data, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b)
	imgs := e.mustImport(data, archive.ImportOptions{})
	data = nil
	var n countWriter
	if err := archive.Export(e.ctx, e.cs, &n, imgs, archive.ExportOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := archive.Export(e.ctx, e.cs, io.Discard, imgs, archive.ExportOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
