package testimages

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/testutil/require"
)

// extractLayers applies layer tarballs in order to root with GNU tar,
// doing the overlay part (whiteouts, opaque directories, a non-directory
// replacing a directory) itself, as an independent check of the images.
func extractLayers(t *testing.T, root string, layers [][]byte) {
	t.Helper()
	tarBin := require.Binary(t, "tar")
	for i, layer := range layers {
		for _, e := range readTar(t, layer) {
			prepareEntry(t, root, e.hdr)
		}
		cmd := exec.Command(tarBin, "-x", "-C", root, "--numeric-owner", "--same-owner", "--same-permissions", "--exclude", WhiteoutPrefix+"*")
		cmd.Stdin = bytes.NewReader(layer)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tar -x layer %d: %v\n%s", i, err, out)
		}
	}
}

// prepareEntry removes what an entry of an upper layer hides.
func prepareEntry(t *testing.T, root string, hdr *tar.Header) {
	t.Helper()
	name := path.Clean(hdr.Name)
	dir, base := path.Split(name)
	switch {
	case base == OpaqueMarker:
		children, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, c := range children {
			removeAll(t, filepath.Join(root, dir, c.Name()))
		}
	case strings.HasPrefix(base, WhiteoutPrefix):
		removeAll(t, filepath.Join(root, dir, strings.TrimPrefix(base, WhiteoutPrefix)))
	default:
		fi, err := os.Lstat(filepath.Join(root, name))
		if err == nil && fi.IsDir() != (hdr.Typeflag == tar.TypeDir) {
			removeAll(t, filepath.Join(root, name))
		}
	}
}

func removeAll(t *testing.T, p string) {
	t.Helper()
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
}

func TestMultiLayerFilesystem(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	require.Root(t) // owners and device nodes
	for _, c := range compressions {
		img, err := MultiLayer(WithCompression(c))
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.LayerTars("")
		if err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		extractLayers(t, root, layers)
		if err := MultiLayerExpected().Check(root); err != nil {
			t.Errorf("%s: %v", c, err)
		}
		if c != Gzip {
			continue
		}
		// The busybox layer alone fails the multilayer expectation.
		base := t.TempDir()
		extractLayers(t, base, layers[:1])
		if err := BusyboxExpected().Check(base); err != nil {
			t.Errorf("busybox base: %v", err)
		}
		if err := MultiLayerExpected().Check(base); err == nil {
			t.Error("multilayer expectation holds for the bare busybox layer")
		}
		// Two layers leave what layer 3 deletes, which must be caught.
		partial := t.TempDir()
		extractLayers(t, partial, layers[:2])
		err = MultiLayerExpected().Check(partial)
		for _, want := range []string{"app/remove-me.txt", "app/data/a.txt", "usr/share/doc", "app/kind"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("check of layers 1-2 does not report %s: %v", want, err)
			}
		}
	}
}

func TestCheckReportsWhiteoutLeftovers(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, WhiteoutPrefix+"x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (Expectation{}).Check(root); err == nil || !strings.Contains(err.Error(), "whiteout") {
		t.Errorf("leftover whiteout not reported: %v", err)
	}
}
