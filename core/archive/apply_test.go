package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testutil/require"
)

func TestApplyMetadata(t *testing.T) {
	require.Root(t)
	root := t.TempDir()
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)
	atime := time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
	layer := newTar(t).
		dir("etc/", 0o755).
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/shadow", Mode: 0o640, Uid: 0, Gid: 42, ModTime: mtime, AccessTime: atime}, "secret").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/su", Mode: 0o4755, Uid: 0, Gid: 0}, "suid").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/wall", Mode: 0o2755, Uid: 0, Gid: 5}, "sgid").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/ping", Mode: 0o755, Uid: 1000, Gid: 1001,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "SCHILY.xattr.user.note": "hi"}}, "ping").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: mtime}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "home/user/", Mode: 0o700, Uid: 1000, Gid: 1000, ModTime: mtime}, "").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "home/user/.profile", Mode: 0o644, Uid: 1000, Gid: 1000}, "x").
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "usr/lib64", Linkname: "/lib", Uid: 7, Gid: 8, ModTime: mtime}, "").
		link("bin/su2", "bin/su").
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, "").
		add(&tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop0", Mode: 0o660, Gid: 6, Devmajor: 7, Devminor: 0}, "").
		add(&tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620, Uid: 3}, "").
		reader()
	apply(t, root, layer)

	check := func(rel string, mode uint32, uid, gid uint32) unix.Stat_t {
		t.Helper()
		st := lstat(t, filepath.Join(root, rel))
		if st.Mode != mode || st.Uid != uid || st.Gid != gid {
			t.Errorf("%s: mode %o uid %d gid %d, want %o %d %d", rel, st.Mode, st.Uid, st.Gid, mode, uid, gid)
		}
		return st
	}
	st := check("etc/shadow", unix.S_IFREG|0o640, 0, 42)
	if st.Mtim != timespec(mtime) || st.Atim != timespec(atime) {
		t.Errorf("etc/shadow times %v %v", st.Mtim, st.Atim)
	}
	check("bin/su", unix.S_IFREG|0o4755, 0, 0)
	check("bin/wall", unix.S_IFREG|0o2755, 0, 5)
	check("bin/ping", unix.S_IFREG|0o755, 1000, 1001)
	st = check("tmp", unix.S_IFDIR|0o1777, 0, 0)
	if st.Mtim != timespec(mtime) {
		t.Errorf("tmp mtime %v, want %v", st.Mtim, mtime)
	}
	// The directory's time is set after its content was written.
	st = check("home/user", unix.S_IFDIR|0o700, 1000, 1000)
	if st.Mtim != timespec(mtime) {
		t.Errorf("home/user mtime %v, want %v", st.Mtim, mtime)
	}
	// Implied parents get 0755 whatever the umask.
	check("usr", unix.S_IFDIR|0o755, 0, 0)
	st = check("usr/lib64", unix.S_IFLNK|0o777, 7, 8)
	if st.Mtim != timespec(mtime) {
		t.Errorf("symlink mtime %v", st.Mtim)
	}
	if target, _ := os.Readlink(filepath.Join(root, "usr/lib64")); target != "/lib" {
		t.Errorf("symlink target %q", target)
	}
	su, su2 := lstat(t, filepath.Join(root, "bin/su")), lstat(t, filepath.Join(root, "bin/su2"))
	if su.Ino != su2.Ino || su.Nlink != 2 {
		t.Errorf("bin/su2 is not a hard link of bin/su")
	}
	st = check("dev/null", unix.S_IFCHR|0o666, 0, 0)
	if st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null rdev %x", st.Rdev)
	}
	check("dev/loop0", unix.S_IFBLK|0o660, 0, 6)
	check("run/fifo", unix.S_IFIFO|0o620, 3, 0)

	attrs, err := listXattrs(filepath.Join(root, "bin/ping"))
	if err != nil {
		t.Fatal(err)
	}
	if attrs["user.note"] != "hi" || len(attrs["security.capability"]) != 20 {
		t.Errorf("bin/ping xattrs %q", attrs)
	}
}

func TestApplyReadsWholeStream(t *testing.T) {
	data := newTar(t).file("a", "hello", 0o644).bytes()
	// Pad to a 10240-byte record as tar(1) does, plus extra zeros.
	padded := append(bytes.Clone(data), make([]byte, 10240+700)...)
	var seen int64
	r := io.TeeReader(bytes.NewReader(padded), writerFunc(func(p []byte) (int, error) {
		seen += int64(len(p))
		return len(p), nil
	}))
	n, err := Apply(context.Background(), t.TempDir(), r)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(padded)) || seen != n {
		t.Fatalf("read %d (tee saw %d), stream is %d bytes", n, seen, len(padded))
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestApplyEmptyLayer(t *testing.T) {
	for _, in := range [][]byte{nil, make([]byte, 1024)} {
		n, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(in))
		if err != nil || n != int64(len(in)) {
			t.Fatalf("empty layer of %d bytes: n=%d err=%v", len(in), n, err)
		}
	}
}

func TestApplyReplacesOtherTypes(t *testing.T) {
	root := t.TempDir()
	apply(t, root, newTar(t).
		dir("a/", 0o755).file("a/child", "x", 0o644).
		file("b", "file", 0o644).
		symlink("c", "/etc").
		dir("d/", 0o755).
		file("e", "old", 0o4755).
		file("f", "plain", 0o644).
		reader())
	apply(t, root, newTar(t).
		file("a", "now a file", 0o600). // dir replaced by file
		dir("b/", 0o750).               // file replaced by dir
		dir("c/", 0o700).               // symlink replaced by dir, not followed
		symlink("d", "target").         // dir replaced by symlink
		file("e", "new", 0o755).        // setuid file replaced: no setuid left
		link("g", "f").
		file("f", "replaced", 0o644). // a later write makes a new inode
		reader())
	for rel, want := range map[string]uint32{"a": unix.S_IFREG | 0o600, "b": unix.S_IFDIR | 0o750, "c": unix.S_IFDIR | 0o700, "d": unix.S_IFLNK | 0o777, "e": unix.S_IFREG | 0o755} {
		if st := lstat(t, filepath.Join(root, rel)); st.Mode != want {
			t.Errorf("%s mode %o, want %o", rel, st.Mode, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a")); string(b) != "now a file" {
		t.Errorf("a = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "g")); string(b) != "plain" {
		t.Errorf("g = %q, want the old content", b)
	}
}

func TestApplyWhiteoutRemove(t *testing.T) {
	root := t.TempDir()
	apply(t, root, newTar(t).
		dir("etc/", 0o755).file("etc/passwd", "root", 0o644).file("etc/group", "g", 0o644).
		dir("var/", 0o755).dir("var/cache/", 0o755).file("var/cache/old", "o", 0o644).dir("var/cache/sub/", 0o755).file("var/cache/sub/deep", "d", 0o644).
		dir("opt/", 0o755).file("opt/old", "o", 0o644).dir("opt/keepdir/", 0o755).file("opt/keepdir/old", "o", 0o644).
		reader())
	apply(t, root, newTar(t).
		file("etc/.wh.passwd", "", 0).
		// The layer adds var/cache/new before the opaque marker and
		// var/cache/later after it: both stay, the old content goes.
		file("var/cache/new", "n", 0o644).
		file("var/cache/.wh..wh..opq", "", 0).
		file("var/cache/later", "l", 0o644).
		// A whiteout of a path this same layer adds hides nothing.
		file("opt/added", "a", 0o644).
		file("opt/.wh.added", "", 0).
		file("opt/.wh.missing", "", 0).
		file("nodir/.wh.x", "", 0).
		// Opaque: pre-existing content of an added subdirectory goes too,
		// the subdirectory's added content stays.
		dir("opt/keepdir/", 0o755).file("opt/keepdir/new", "n", 0o644).
		file("opt/.wh..wh..opq", "", 0).
		file(".wh..wh.plnk", "", 0). // aufs metadata: ignored
		reader())
	for _, gone := range []string{"etc/passwd", "var/cache/old", "var/cache/sub", "opt/old", "opt/keepdir/old"} {
		if exists(filepath.Join(root, gone)) {
			t.Errorf("%s survived its whiteout", gone)
		}
	}
	for _, kept := range []string{"etc/group", "var/cache/new", "var/cache/later", "opt/added", "opt/keepdir/new"} {
		if !exists(filepath.Join(root, kept)) {
			t.Errorf("%s was removed", kept)
		}
	}
	for _, never := range []string{"etc/.wh.passwd", "nodir", ".wh..wh.plnk", "var/cache/.wh..wh..opq"} {
		if exists(filepath.Join(root, never)) {
			t.Errorf("%s was created", never)
		}
	}
}

func TestApplyWhiteoutOverlayMode(t *testing.T) {
	require.Root(t)
	root := t.TempDir()
	apply(t, root, newTar(t).
		dir("etc/", 0o755).
		file("etc/.wh.passwd", "", 0).
		file("var/cache/.wh..wh..opq", "", 0). // before its directory entry
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "var/cache/", Mode: 0o700, PAXRecords: map[string]string{
			"SCHILY.xattr.trusted.overlay.opaque": "n", // forged: dropped
			"SCHILY.xattr.user.keep":              "1",
		}}, "").
		file("var/cache/new", "n", 0o644).
		reader(), WithWhiteoutMode(WhiteoutOverlay))
	st := lstat(t, filepath.Join(root, "etc/passwd"))
	if st.Mode != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/passwd whiteout mode %o rdev %d", st.Mode, st.Rdev)
	}
	attrs, err := listXattrs(filepath.Join(root, "var/cache"))
	if err != nil {
		t.Fatal(err)
	}
	if attrs[overlayOpaqueXattr] != "y" || attrs["user.keep"] != "1" {
		t.Errorf("var/cache xattrs %q", attrs)
	}
	if exists(filepath.Join(root, "etc/.wh.passwd")) || !exists(filepath.Join(root, "var/cache/new")) {
		t.Error("overlay mode wrote the wrong entries")
	}
}

func TestApplyErrors(t *testing.T) {
	cases := map[string]struct {
		layer []byte
		want  error
		names string
	}{
		"garbage": {bytes.Repeat([]byte("not a tar file "), 100), errdefs.ErrInvalidArgument, "read layer tar"},
		"truncated": {func() []byte {
			b := newTar(t).file("big", strings.Repeat("x", 5000), 0o644).bytes()
			return b[:2048]
		}(), nil, "big"},
		"parent is a file": {newTar(t).file("f", "x", 0o644).file("f/child", "y", 0o644).bytes(), errdefs.ErrInvalidArgument, "f/child"},
		"root as a file":   {newTar(t).file(".", "x", 0o644).bytes(), errdefs.ErrInvalidArgument, `"."`},
		"unknown type":     {newTar(t).add(&tar.Header{Typeflag: 'Z', Name: "z"}, "").bytes(), errdefs.ErrNotImplemented, `"z"`},
		"link to dir":      {newTar(t).dir("d/", 0o755).link("l", "d").bytes(), nil, `"l"`},
		"link missing":     {newTar(t).link("l", "nothere").bytes(), nil, "nothere"},
		"name too long":    {newTar(t).file(strings.Repeat("n", 300), "x", 0o644).bytes(), errdefs.ErrInvalidArgument, "nnnn"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(tc.layer))
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v is not %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.names) {
				t.Errorf("error %q does not name %q", err, tc.names)
			}
		})
	}
}

func TestApplyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, t.TempDir(), newTar(t).file("a", "x", 0o644).reader())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestApplyLongNames(t *testing.T) {
	root := t.TempDir()
	comp := strings.Repeat("c", 200)
	long := strings.Join([]string{comp, comp, comp, comp, "file"}, "/") // > 800 bytes, needs PAX
	apply(t, root, newTar(t).file(long, "deep", 0o644).symlink(comp+"/l", strings.Repeat("t", 1000)).reader())
	if b, err := os.ReadFile(filepath.Join(root, long)); err != nil || string(b) != "deep" {
		t.Fatalf("long name: %q %v", b, err)
	}
	if target, _ := os.Readlink(filepath.Join(root, comp, "l")); len(target) != 1000 {
		t.Fatalf("long link target has %d bytes", len(target))
	}
}

func TestApplyNotRootKeepsOwnerOption(t *testing.T) {
	root := t.TempDir()
	apply(t, root, newTar(t).add(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644, Uid: 4242, Gid: 4242}, "x").reader(), WithSameOwner(false))
	st := lstat(t, filepath.Join(root, "f"))
	if st.Uid != uint32(os.Geteuid()) {
		t.Fatalf("owner %d with WithSameOwner(false)", st.Uid)
	}
}
