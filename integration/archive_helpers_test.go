package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/integration/testimages"
)

// writeArchive writes an OCI archive of imgs to a temp file.
func writeArchive(t *testing.T, dir string, imgs ...*testimages.Image) string {
	t.Helper()
	var buf bytes.Buffer
	if err := testimages.WriteOCIArchive(&buf, testimages.WriteOptions{}, imgs...); err != nil {
		t.Fatal(err)
	}
	return saveBytes(t, dir, "oci.tar", buf.Bytes())
}

func writeDockerArchive(t *testing.T, dir string, imgs ...*testimages.Image) string {
	t.Helper()
	var buf bytes.Buffer
	if err := testimages.WriteDockerArchive(&buf, imgs...); err != nil {
		t.Fatal(err)
	}
	return saveBytes(t, dir, "docker.tar", buf.Bytes())
}

func saveBytes(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "*-"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// tarEntries is an archive taken apart so a test can damage it.
type tarEntries map[string][]byte

func readTar(t *testing.T, path string) tarEntries {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := tarEntries{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = b
	}
}

func (e tarEntries) write(t *testing.T, dir, name string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(e))
	for n := range e {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(e[n])), Typeflag: tar.TypeReg})
		tw.Write(e[n])
	}
	tw.Close()
	return saveBytes(t, dir, name, buf.Bytes())
}

func blobPath(d digest.Digest) string {
	return filepath.Join("blobs", d.Algorithm().String(), d.Encoded())
}

// addBlob stores b in the archive and returns its descriptor.
func (e tarEntries) addBlob(mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	e[blobPath(d)] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// setIndex replaces index.json with one naming manifest as name.
func (e tarEntries) setIndex(name string, manifest ocispec.Descriptor) {
	manifest.Annotations = map[string]string{"io.containerd.image.name": name, ocispec.AnnotationRefName: "latest"}
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{manifest}, MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	b, _ := json.Marshal(idx)
	e["index.json"] = b
}
