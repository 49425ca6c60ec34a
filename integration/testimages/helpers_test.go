package testimages

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/berthd/berth/internal/testutil/require"
)

func needBusybox(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		require.Missing(t, BusyboxPath+" (busybox-static)")
	}
}

// tarEntry is a header with its data, as read back from a tarball.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t testing.TB, data []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read tar entry %s: %v", hdr.Name, err)
		}
		out = append(out, tarEntry{hdr, body})
	}
}

// tarFiles maps the names of a tarball's regular files to their content.
func tarFiles(t testing.TB, data []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, e := range readTar(t, data) {
		if e.hdr.Typeflag == tar.TypeReg {
			files[e.hdr.Name] = e.data
		}
	}
	return files
}

func buildAll(t testing.TB, opts ...Option) map[string]*Image {
	t.Helper()
	images := map[string]*Image{}
	for name, build := range map[string]func(...Option) (*Image, error){
		"busybox": Busybox, "multilayer": MultiLayer, "multiplatform": MultiPlatform, "symlink-data": SymlinkData,
	} {
		img, err := build(opts...)
		if err != nil {
			t.Fatalf("build %s: %v", name, err)
		}
		images[name] = img
	}
	return images
}

func ociArchive(t testing.TB, opts WriteOptions, images ...*Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteOCIArchive(&buf, opts, images...); err != nil {
		t.Fatalf("write OCI archive: %v", err)
	}
	return buf.Bytes()
}

func dockerArchive(t testing.TB, images ...*Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteDockerArchive(&buf, images...); err != nil {
		t.Fatalf("write docker archive: %v", err)
	}
	return buf.Bytes()
}

var compressions = []Compression{Gzip, Zstd, Uncompressed}
