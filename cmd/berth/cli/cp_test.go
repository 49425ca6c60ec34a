package cli

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestSplitCopyArg(t *testing.T) {
	for _, tc := range []struct{ arg, ctr, path string }{
		{"web:/etc", "web", "/etc"},
		{"web:", "web", ""},
		{"/tmp/a:b", "", "/tmp/a:b"},
		{"./x:y", "", "./x:y"},
		{"dir/a:b", "", "dir/a:b"},
		{"-", "", "-"},
		{"plain", "", "plain"},
	} {
		if c, p := splitCopyArg(tc.arg); c != tc.ctr || p != tc.path {
			t.Errorf("splitCopyArg(%q) = %q, %q", tc.arg, c, p)
		}
	}
}

func TestCopyPlan(t *testing.T) {
	file := func(name string) copySource { return newCopySource("/x/"+name, name, false) }
	dir := func(p, top string) copySource { return newCopySource(p, top, true) }
	exists, missing, isFile := destination{exists: true, dir: true}, destination{}, destination{exists: true}
	for _, tc := range []struct {
		name          string
		src           copySource
		dst           string
		d             destination
		dir, mkdir    string
		top, newTop   string
		contents, err bool
	}{
		{name: "file into folder", src: file("f"), dst: "/d", d: exists, dir: "/d", top: "f", newTop: "f"},
		{name: "file to new name", src: file("f"), dst: "/d/g", d: missing, dir: "/d", top: "f", newTop: "g"},
		{name: "file over file", src: file("f"), dst: "/d/g", d: isFile, dir: "/d", top: "f", newTop: "g"},
		{name: "file to missing folder", src: file("f"), dst: "/nope/", d: missing, err: true},
		{name: "folder into folder", src: dir("/a/b", "b"), dst: "/d", d: exists, dir: "/d", top: "b", newTop: "b"},
		{name: "folder to new name", src: dir("/a/b", "b"), dst: "/d/c", d: missing, dir: "/d", top: "b", newTop: "c"},
		{name: "folder content", src: dir("/a/b/.", "b"), dst: "/d", d: exists, dir: "/d", top: "b", newTop: "b", contents: true},
		{name: "folder onto file", src: dir("/a/b", "b"), dst: "/d/f", d: isFile, err: true},
		{name: "root into folder", src: dir("/", ""), dst: "/d", d: exists, dir: "/d/", mkdir: "/d/"},
		{name: "followed link to root, new name", src: dir("/link", ""), dst: "/d/copy", d: missing, dir: "/d/copy", mkdir: "/d/copy"},
		{name: "followed link to root, into folder", src: dir("/link", ""), dst: "/d", d: exists, dir: "/d/link", mkdir: "/d/link"},
	} {
		dir, mkdir, p, err := plan(tc.src, tc.dst, tc.d)
		if tc.err {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if err != nil || dir != strings.TrimSuffix(tc.dir, "/") && dir != tc.dir || mkdir != strings.TrimSuffix(tc.mkdir, "/") && mkdir != tc.mkdir ||
			p.top != tc.top || p.newTop != tc.newTop || p.contents != tc.contents {
			t.Errorf("%s: dir %q mkdir %q plan %+v err %v", tc.name, dir, mkdir, p, err)
		}
	}
}

func TestRetarRenamesAndDropsStrayEntries(t *testing.T) {
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	for _, h := range []tar.Header{
		{Name: "b/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "b/f", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 7},
		{Name: "b/hard", Typeflag: tar.TypeLink, Linkname: "b/f"},
		{Name: "stray", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "bb/x", Typeflag: tar.TypeReg, Mode: 0o644},
	} {
		tw.WriteHeader(&h)
	}
	tw.Close()
	var out bytes.Buffer
	if err := retar(&in, &out, copyPlan{top: "b", newTop: "c"}, owner(false, 0, 0)); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+">"+h.Linkname)
		if h.Uid != 0 {
			t.Errorf("%s kept uid %d", h.Name, h.Uid)
		}
	}
	if strings.Join(got, " ") != "c/> c/f> c/hard>c/f" {
		t.Errorf("entries %q", got)
	}
}
