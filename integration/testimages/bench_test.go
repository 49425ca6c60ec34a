package testimages

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func readLayoutIndex(t *testing.T, dir string) ocispec.Index {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

func readLayoutManifest(t *testing.T, dir string, desc ocispec.Descriptor) ocispec.Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, blobPath(desc.Digest)))
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGenerateBench(t *testing.T) {
	t.Parallel()
	const size = 24 << 20
	spec := BenchSpec{Name: "example.com/bench:a", Layers: 3, Size: size, Seed: 1, SharedLayers: 2, BaseSeed: 9}
	dir1, dir2 := t.TempDir(), t.TempDir()
	a1, err := GenerateBench(dir1, spec)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := GenerateBench(dir2, spec)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Digest != a2.Digest {
		t.Fatalf("same spec, different images: %s and %s", a1.Digest, a2.Digest)
	}
	other := spec
	other.Name, other.Seed = "example.com/bench:b", 2
	b, err := GenerateBench(dir1, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(os.DirFS(dir1)); err != nil {
		t.Fatal(err)
	}
	idx := readLayoutIndex(t, dir1)
	if len(idx.Manifests) != 2 || idx.Manifests[0].Digest != a1.Digest || idx.Manifests[1].Digest != b.Digest {
		t.Fatalf("index.json %+v", idx.Manifests)
	}
	ma, mb := readLayoutManifest(t, dir1, a1), readLayoutManifest(t, dir1, b)
	for i := range 3 {
		shared := ma.Layers[i].Digest == mb.Layers[i].Digest
		if shared != (i < 2) {
			t.Errorf("layer %d shared: %v", i, shared)
		}
	}
	// Regenerating a name replaces its entry.
	if _, err := GenerateBench(dir1, spec); err != nil {
		t.Fatal(err)
	}
	if n := len(readLayoutIndex(t, dir1).Manifests); n != 2 {
		t.Errorf("index.json has %d entries after regenerating", n)
	}
	var fileBytes, compressed, uncompressed int64
	for _, l := range ma.Layers {
		blob, err := os.ReadFile(filepath.Join(dir1, blobPath(l.Digest)))
		if err != nil {
			t.Fatal(err)
		}
		tarData, err := Decompress(blob)
		if err != nil {
			t.Fatal(err)
		}
		files := 0
		for _, e := range readTar(t, tarData) {
			if e.hdr.Typeflag == tar.TypeReg {
				fileBytes += e.hdr.Size
				files++
			}
		}
		if files < 10 {
			t.Errorf("layer %s has only %d files", l.Digest, files)
		}
		compressed += int64(len(blob))
		uncompressed += int64(len(tarData))
	}
	if fileBytes > size || fileBytes < size-3 {
		t.Errorf("%d file bytes, want %d", fileBytes, size)
	}
	// Real images shrink to roughly a third to a half under gzip.
	if ratio := float64(compressed) / float64(uncompressed); ratio < 0.25 || ratio > 0.65 {
		t.Errorf("compression ratio %.2f is unrealistic", ratio)
	}
	var archive bytes.Buffer
	if err := WriteLayoutArchive(&archive, dir1); err != nil {
		t.Fatal(err)
	}
	if err := ValidateArchive(&archive); err != nil {
		t.Errorf("archive of the bench layout: %v", err)
	}
}

func TestGenerateBenchBusybox(t *testing.T) {
	needBusybox(t)
	dir := t.TempDir()
	desc, err := GenerateBench(dir, BenchSpec{Layers: 2, Size: 1 << 20, Busybox: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	m := readLayoutManifest(t, dir, desc)
	blob, err := os.ReadFile(filepath.Join(dir, blobPath(m.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	tarData, err := Decompress(blob)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tarFiles(t, tarData)["bin/busybox"]; !ok {
		t.Error("first layer has no bin/busybox")
	}
}

func TestGenerateBenchRejects(t *testing.T) {
	for _, spec := range []BenchSpec{{Layers: -1}, {Layers: 2, SharedLayers: 3}, {Size: -5}} {
		if _, err := GenerateBench(t.TempDir(), spec); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%+v: err %v", spec, err)
		}
	}
}

// BenchmarkGenerateBench measures generation throughput in uncompressed
// bytes per second.
func BenchmarkGenerateBench(b *testing.B) {
	const size = 64 << 20
	b.SetBytes(size)
	for b.Loop() {
		if _, err := GenerateBench(b.TempDir(), BenchSpec{Layers: 4, Size: size}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBusybox(b *testing.B) {
	needBusybox(b)
	for b.Loop() {
		if _, err := Busybox(); err != nil {
			b.Fatal(err)
		}
	}
}
