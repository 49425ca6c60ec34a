package testimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestNewLayerNormalizes(t *testing.T) {
	l, err := NewLayer(
		File("/etc/x", []byte("x"), 0o600).Owner(7, 8),
		Hardlink("a/h", "/etc/x"),
		Symlink("a/s", "../etc/x"),
		CharDev("dev/null", 1, 3, 0o666),
		Whiteout("usr/old"),
		Opaque("var/"),
		Dir("tmp", 0o1777),
	)
	if err != nil {
		t.Fatal(err)
	}
	if l.DiffID != digest.FromBytes(l.Tar) {
		t.Errorf("diff ID %s is not the digest of the tar", l.DiffID)
	}
	want := []struct {
		name     string
		typ      byte
		mode     int64
		uid, gid int
		link     string
	}{
		{"a/", tar.TypeDir, 0o755, 0, 0, ""},
		{"a/h", tar.TypeReg, 0o600, 7, 8, ""}, // holds the data: it comes first

		{"a/s", tar.TypeSymlink, 0o777, 0, 0, "../etc/x"},
		{"dev/", tar.TypeDir, 0o755, 0, 0, ""},
		{"dev/null", tar.TypeChar, 0o666, 0, 0, ""},
		{"etc/", tar.TypeDir, 0o755, 0, 0, ""},
		{"etc/x", tar.TypeLink, 0o600, 7, 8, "a/h"},
		{"tmp/", tar.TypeDir, 0o1777, 0, 0, ""},
		{"usr/", tar.TypeDir, 0o755, 0, 0, ""},
		{"usr/.wh.old", tar.TypeReg, 0o644, 0, 0, ""},
		{"var/", tar.TypeDir, 0o755, 0, 0, ""},
		{"var/.wh..wh..opq", tar.TypeReg, 0o644, 0, 0, ""},
	}
	got := readTar(t, l.Tar)
	if len(got) != len(want) {
		for _, e := range got {
			t.Log(e.hdr.Name)
		}
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i, w := range want {
		h := got[i].hdr
		if h.Name != w.name || h.Typeflag != w.typ || h.Mode != w.mode || h.Uid != w.uid || h.Gid != w.gid || h.Linkname != w.link {
			t.Errorf("entry %d: %q type %q mode %#o owner %d:%d link %q, want %+v", i, h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, w)
		}
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("entry %s: mtime %v, want %v", h.Name, h.ModTime, Epoch)
		}
	}
	if dev := got[4].hdr; dev.Devmajor != 1 || dev.Devminor != 3 {
		t.Errorf("dev/null is %d,%d", dev.Devmajor, dev.Devminor)
	}
	if string(got[1].data) != "x" || got[1].hdr.Size != 1 || got[6].hdr.Size != 0 {
		t.Errorf("hard-linked data: a/h %q (size %d), etc/x size %d", got[1].data, got[1].hdr.Size, got[6].hdr.Size)
	}
}

func TestNewLayerRejects(t *testing.T) {
	for name, entries := range map[string][]Entry{
		"duplicate":      {File("a", nil, 0o644), File("/a", nil, 0o644)},
		"root":           {Dir("/", 0o755)},
		"dot-dot-to-top": {File("x/../..", nil, 0o644)},
	} {
		if _, err := NewLayer(entries...); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: err %v, want invalid argument", name, err)
		}
	}
}

func TestRawLayerVerbatim(t *testing.T) {
	l, err := RawLayer(
		Raw(tar.Header{Typeflag: tar.TypeReg, Name: "../escape", Mode: 0o644}, []byte("e")),
		Raw(tar.Header{Typeflag: tar.TypeSymlink, Name: "z", Linkname: "/etc"}, nil),
		Raw(tar.Header{Typeflag: tar.TypeReg, Name: "/abs", Mode: 0o644}, nil),
		Raw(tar.Header{Typeflag: tar.TypeReg, Name: "../escape", Mode: 0o600}, []byte("again")),
	)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range readTar(t, l.Tar) {
		names = append(names, e.hdr.Name)
	}
	if want := []string{"../escape", "z", "/abs", "../escape"}; !slices.Equal(names, want) {
		t.Errorf("names %q, want %q (order and spelling kept)", names, want)
	}
}

func TestCompressRoundTrip(t *testing.T) {
	l, err := NewLayer(File("f", bytes.Repeat([]byte("berth "), 1000), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range compressions {
		desc, blob, err := l.Compress(c)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		mt, _ := c.MediaType()
		if desc.MediaType != mt || desc.Digest != digest.FromBytes(blob) || desc.Size != int64(len(blob)) {
			t.Errorf("%s: descriptor %+v does not describe the blob", c, desc)
		}
		if c != Uncompressed && len(blob) >= len(l.Tar) {
			t.Errorf("%s: %d bytes from %d, not compressed", c, len(blob), len(l.Tar))
		}
		back, err := Decompress(blob)
		if err != nil || !bytes.Equal(back, l.Tar) {
			t.Errorf("%s: decompressed blob differs from the tar (%v)", c, err)
		}
	}
	if _, _, err := l.Compress("lz4"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown compression: err %v", err)
	}
}

func TestNewLayerHardlinkChain(t *testing.T) {
	l, err := NewLayer(Hardlink("a", "z"), Hardlink("b", "/z"), File("z", []byte("data"), 0o640), Hardlink("zz", "z"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range readTar(t, l.Tar) {
		got = append(got, fmt.Sprintf("%s %c %s %q", e.hdr.Name, e.hdr.Typeflag, e.hdr.Linkname, e.data))
	}
	want := []string{`a 0  "data"`, `b 1 a ""`, `z 1 a ""`, `zz 1 a ""`}
	if !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
}
