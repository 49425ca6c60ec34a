package testimages

import (
	"archive/tar"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// naiveApply is the applier every hostile layer is written against: it
// joins names onto root, takes absolute names and link targets as host
// paths and follows every symlink.
func naiveApply(root string, layer []byte, t *testing.T) {
	host := func(name string) string {
		if filepath.IsAbs(name) {
			return name
		}
		return filepath.Join(root, name)
	}
	for _, e := range readTar(t, layer) {
		p := host(e.hdr.Name)
		dir, base := filepath.Split(p)
		var err error
		switch {
		case base == OpaqueMarker:
			var children []os.DirEntry
			children, err = os.ReadDir(dir)
			for _, c := range children {
				_ = os.RemoveAll(filepath.Join(dir, c.Name()))
			}
		case strings.HasPrefix(base, WhiteoutPrefix):
			err = os.RemoveAll(filepath.Join(dir, strings.TrimPrefix(base, WhiteoutPrefix)))
		case e.hdr.Typeflag == tar.TypeDir:
			if err = os.MkdirAll(p, 0o755); err == nil {
				err = os.Chmod(p, os.FileMode(e.hdr.Mode))
			}
		case e.hdr.Typeflag == tar.TypeReg:
			err = os.WriteFile(p, e.data, os.FileMode(e.hdr.Mode))
		case e.hdr.Typeflag == tar.TypeSymlink:
			err = os.Symlink(e.hdr.Linkname, p)
		case e.hdr.Typeflag == tar.TypeLink:
			err = os.Link(host(e.hdr.Linkname), p)
		}
		if err != nil {
			t.Logf("naive apply %s: %v", e.hdr.Name, err)
		}
	}
}

// TestEvilLayersEscape proves that each hostile layer really reaches the
// outside directory when applied naively, and that CheckOutside sees it.
func TestEvilLayersEscape(t *testing.T) {
	base := t.TempDir()
	layers, err := EvilLayers(filepath.Join(base, "never-used"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, l := range layers {
		names[l.Name] = true
		t.Run(l.Name, func(t *testing.T) {
			dir := t.TempDir()
			root, outside := filepath.Join(dir, "root"), filepath.Join(dir, "outside")
			for _, d := range []string{root, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := PrepareOutside(outside); err != nil {
				t.Fatal(err)
			}
			if err := CheckOutside(outside); err != nil {
				t.Fatalf("fresh outside: %v", err)
			}
			evil := findEvil(t, outside, l.Name)
			naiveApply(root, evil.Layer.Tar, t)
			err := CheckOutside(outside)
			if err == nil {
				t.Fatal("a naive applier did not escape: the layer is harmless")
			}
			t.Log(err)
			_ = os.Chmod(outside, 0o755) // let t.TempDir clean up
		})
	}
	if len(names) != len(layers) {
		t.Errorf("duplicate evil layer names")
	}
}

func findEvil(t *testing.T, outside, name string) EvilLayer {
	t.Helper()
	layers, err := EvilLayers(outside)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no evil layer %s", name)
	return EvilLayer{}
}

func TestEvilLayersKeepNames(t *testing.T) {
	layers, err := EvilLayers("/tmp/outside")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		if l.Name != "absolute-file" {
			continue
		}
		entries := readTar(t, l.Layer.Tar)
		if len(entries) != 1 || entries[0].hdr.Name != path.Join("/tmp/outside", "absolute") {
			t.Errorf("absolute-file entries %+v", entries)
		}
	}
	if _, err := EvilLayers("relative"); err == nil {
		t.Error("relative outside accepted")
	}
}
