package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testutil/require"
)

// baseLayer is a small image: every entry type, owners, modes, xattrs, a
// hard link, a setuid binary.
func baseLayer(t testing.TB) []byte {
	return newTar(t).
		dir("etc/", 0o755).
		file("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644).
		file("etc/group", "root:x:0:\n", 0o644).
		file("etc/hostname", "box\n", 0o644).
		dir("bin/", 0o755).
		file("bin/sh", strings.Repeat("ELF", 5000), 0o755).
		link("bin/ls", "bin/sh").
		dir("usr/", 0o755).dir("usr/lib/", 0o755).
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "usr/lib/libc.so", Mode: 0o644, PAXRecords: map[string]string{"SCHILY.xattr.user.a": "1"}}, "libc").
		symlink("lib", "usr/lib").
		dir("var/", 0o755).dir("var/cache/", 0o755).
		file("var/cache/a", "a", 0o644).
		dir("var/cache/sub/", 0o700).file("var/cache/sub/b", "b", 0o600).
		dir("dev/", 0o755).
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, "").
		add(&tar.Header{Typeflag: tar.TypeFifo, Name: "dev/initctl", Mode: 0o600}, "").
		dir("opt/", 0o755).dir("opt/app/", 0o755).
		file("opt/app/config", "v1", 0o644).file("opt/app/data", "data", 0o644).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "home/", Mode: 0o755}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "home/user/", Mode: 0o750, Uid: 1000, Gid: 1000}, "").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "home/user/.profile", Mode: 0o644, Uid: 1000, Gid: 1000}, "PS1=$\n").
		dir("sbin/", 0o755).
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "sbin/su", Mode: 0o4755}, "su").
		bytes()
}

// secondLayer deletes, makes a directory opaque, changes and adds.
func secondLayer(t testing.TB) []byte {
	return newTar(t).
		dir("etc/", 0o755).
		file("etc/.wh.hostname", "", 0).
		dir("var/", 0o755).dir("var/cache/", 0o755).
		file("var/cache/.wh..wh..opq", "", 0).
		file("var/cache/new", "new", 0o644).
		dir("opt/", 0o755).dir("opt/app/", 0o755).
		file("opt/app/config", "v2", 0o644).
		dir("usr/", 0o755).dir("usr/lib/", 0o755).
		file("usr/lib/libnew.so", "new", 0o644).
		bytes()
}

// buildParent applies the two layers into a new directory.
func buildParent(t *testing.T, dir string, opts ...ApplyOpt) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	apply(t, dir, bytes.NewReader(baseLayer(t)), opts...)
	apply(t, dir, bytes.NewReader(secondLayer(t)), opts...)
	return dir
}

// mutate changes a tree the way a container would.
// On overlayfs (onOverlay) hard-linked lower files are left alone: copy-up
// splits a hard link while the lower file keeps counting both names, which no
// layer can express.
func mutate(t *testing.T, root string, onOverlay bool) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, rel) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(p("etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"), 0o644))
	must(unix.Setxattr(p("etc/passwd"), "user.edited", []byte("yes"), 0))
	// Same size and same whole-second mtime: only the content tells.
	st := lstat(t, p("etc/group"))
	must(os.WriteFile(p("etc/group"), []byte("ROOT:x:0:\n"), 0o644))
	must(unix.UtimesNano(p("etc/group"), []unix.Timespec{st.Atim, st.Mtim}))
	if !onOverlay {
		must(os.Chmod(p("bin/sh"), 0o700)) // and bin/ls, its hard link
	}
	must(os.Lchown(p("home/user/.profile"), 2000, 2000))
	must(unix.Setxattr(p("usr/lib/libc.so"), "user.a", []byte("2"), 0))
	must(os.Remove(p("var/cache/new")))
	must(os.RemoveAll(p("opt/app")))
	must(os.Mkdir(p("etc/hostname"), 0o711))
	must(os.Remove(p("lib")))
	must(os.Mkdir(p("lib"), 0o755))
	must(os.WriteFile(p("lib/ld.so"), []byte("ld"), 0o755))
	must(os.Remove(p("usr/lib/libnew.so")))
	must(os.Symlink("libc.so", p("usr/lib/libnew.so")))
	must(os.MkdirAll(p("new/deep/er"), 0o755))
	must(os.WriteFile(p("new/a"), []byte("shared"), 0o644))
	must(os.Link(p("new/a"), p("new/b")))
	must(os.WriteFile(p("new/deep/er/file"), []byte("deep"), 0o640))
	must(os.WriteFile(p("new/suid"), []byte("x"), 0o755))
	must(os.Chmod(p("new/suid"), 0o4755))
	must(os.Chmod(p("new/deep"), 0o2775))
	must(unix.Setxattr(p("new/deep"), "user.dir", []byte("d"), 0))
	must(unix.Mkfifo(p("new/fifo"), 0o600))
	if os.Geteuid() == 0 {
		must(unix.Mknod(p("dev/zero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
		must(os.Lchown(p("new/deep/er/file"), 33, 44))
	}
	must(unix.Removexattr(p("new/deep"), "user.dir"))
	must(unix.Setxattr(p("new/deep"), "user.dir2", []byte("d2"), 0))
}

func writeDiff(t *testing.T, lower, upper string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteDiff(context.Background(), &buf, lower, upper); err != nil {
		t.Fatalf("WriteDiff: %v", err)
	}
	return buf.Bytes()
}

func TestDiffRoundTrip(t *testing.T) {
	require.Root(t)
	base := t.TempDir()
	parent := buildParent(t, filepath.Join(base, "parent"))
	upper := buildParent(t, filepath.Join(base, "upper"))
	if treeOf(t, parent) != treeOf(t, upper) {
		t.Fatalf("applying the same layers twice gave different trees:\n%s", lineDiff(treeOf(t, parent), treeOf(t, upper)))
	}
	mutate(t, upper, false)

	layer := writeDiff(t, parent, upper)
	if again := writeDiff(t, parent, upper); !bytes.Equal(layer, again) {
		t.Fatal("WriteDiff is not deterministic")
	}
	target := buildParent(t, filepath.Join(base, "target"))
	apply(t, target, bytes.NewReader(layer))
	if got, want := treeSecs(t, target), treeSecs(t, upper); got != want {
		t.Fatalf("parent + diff differs from upper:\n%s", lineDiff(want, got))
	}

	// The layer holds only changes, and the hard link as a link entry.
	names := tarNames(t, layer)
	for _, absent := range []string{"var/cache/a", "dev/null", "sbin/", "sbin/su", "var/cache/sub/"} {
		if _, ok := names[absent]; ok {
			t.Errorf("unchanged %s is in the diff", absent)
		}
	}
	for name, want := range map[string]byte{
		"etc/passwd": tar.TypeReg, "etc/group": tar.TypeReg, "bin/ls": tar.TypeReg, "bin/sh": tar.TypeLink,
		"var/cache/.wh.new": tar.TypeReg, "opt/.wh.app": tar.TypeReg, "new/b": tar.TypeLink, "etc/hostname/": tar.TypeDir,
		"lib/": tar.TypeDir, "usr/lib/libnew.so": tar.TypeSymlink, "home/user/.profile": tar.TypeReg, "home/user/": tar.TypeDir,
	} {
		if got, ok := names[name]; !ok || got != want {
			t.Errorf("diff entry %s: type %q (present %v), want %q", name, got, ok, want)
		}
	}
	if _, ok := names["dev/"]; !ok && os.Geteuid() == 0 {
		t.Error("parent dev/ of the new device is missing")
	}
}

func TestDiffExportFromEmpty(t *testing.T) {
	require.Root(t)
	base := t.TempDir()
	parent := buildParent(t, filepath.Join(base, "parent"))
	var buf bytes.Buffer
	if err := WriteDiff(context.Background(), &buf, "", parent); err != nil {
		t.Fatal(err)
	}
	for name := range tarNames(t, buf.Bytes()) {
		if strings.Contains(name, whiteoutPrefix) {
			t.Errorf("export contains whiteout %s", name)
		}
	}
	out := filepath.Join(base, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	apply(t, out, &buf)
	if got, want := treeSecs(t, out), treeSecs(t, parent); got != want {
		t.Fatalf("export re-applied differs:\n%s", lineDiff(want, got))
	}
}

func TestChanges(t *testing.T) {
	base := t.TempDir()
	lower, upper := filepath.Join(base, "lower"), filepath.Join(base, "upper")
	layer := newTar(t).
		dir("a/", 0o755).file("a/keep", "k", 0o644).file("a/edit", "1", 0o644).file("a/gone", "g", 0o644).
		dir("b/", 0o755).dir("b/c/", 0o755).file("b/c/d", "d", 0o644).
		dir("e/", 0o755).file("e/f", "f", 0o644).
		file("z", "z", 0o644).bytes()
	for _, d := range []string{lower, upper} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		apply(t, d, bytes.NewReader(layer))
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(upper, "a/edit"), []byte("2"), 0o644))
	must(os.Remove(filepath.Join(upper, "a/gone")))
	must(os.WriteFile(filepath.Join(upper, "b/c/new"), []byte("n"), 0o644))
	must(os.RemoveAll(filepath.Join(upper, "e")))
	must(os.MkdirAll(filepath.Join(upper, "n/m"), 0o755))
	must(os.Chmod(filepath.Join(upper, "z"), 0o600))

	var got []string
	err := Changes(context.Background(), lower, upper, func(c Change) error {
		got = append(got, c.Kind.String()+" "+c.Path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"C /a", "C /a/edit", "D /a/gone",
		"C /b", "C /b/c", "A /b/c/new",
		"D /e",
		"A /n", "A /n/m",
		"C /z",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// tarNames maps each entry name of a layer to its type.
func tarNames(t *testing.T, layer []byte) map[string]byte {
	t.Helper()
	names := map[string]byte{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Format != tar.FormatUnknown && hdr.Format&(tar.FormatPAX|tar.FormatUSTAR) == 0 {
			t.Errorf("%s: format %v", hdr.Name, hdr.Format)
		}
		if hdr.ModTime.Nanosecond() != 0 || hdr.ModTime.Before(time.Unix(1, 0)) && !strings.Contains(hdr.Name, whiteoutPrefix) {
			t.Errorf("%s: mtime %v", hdr.Name, hdr.ModTime)
		}
		names[hdr.Name] = hdr.Typeflag
	}
}

// lineDiff shows the lines only one of two tree descriptions has.
func lineDiff(want, got string) string {
	wl, gl := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		wl[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		gl[l] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !gl[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !wl[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
