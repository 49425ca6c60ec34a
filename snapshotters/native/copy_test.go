package native

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthd/berth/snapshotters/testsuite"
	"golang.org/x/sys/unix"
)

// makeSource builds a tree with every kind of file and attribute the copy
// must keep, times set to a fixed past moment.
func makeSource(t *testing.T, src string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "dir", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(src, "dir", "file"), []byte("content"), 0o640))
	must(os.Link(filepath.Join(src, "dir", "file"), filepath.Join(src, "hardlink")))
	must(os.Symlink("dir/file", filepath.Join(src, "symlink")))
	must(unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	must(os.WriteFile(filepath.Join(src, "setuid"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Lchown(filepath.Join(src, "setuid"), 1000, 1000))
	must(unix.Chmod(filepath.Join(src, "setuid"), 0o4755))
	must(os.Lchown(filepath.Join(src, "symlink"), 5, 6))
	must(unix.Lsetxattr(filepath.Join(src, "dir", "file"), "user.k", []byte("v"), 0))
	must(unix.Lsetxattr(filepath.Join(src, "dir"), "trusted.k", []byte("t"), 0))
	must(unix.Chmod(filepath.Join(src, "dir", "sub"), 0o500)) // read-only dir
	sparse, err := os.Create(filepath.Join(src, "sparse"))
	must(err)
	_, err = sparse.WriteAt([]byte("middle"), 32<<20)
	must(err)
	must(sparse.Truncate(64 << 20))
	must(sparse.Close())
	past := unix.NsecToTimespec(time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC).UnixNano())
	must(filepath.Walk(src, func(path string, _ os.FileInfo, err error) error {
		must(err)
		return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{past, past}, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

func TestCopyTree(t *testing.T) {
	testsuite.RequireRoot(t) // chown, mknod, trusted xattrs
	src, dst := t.TempDir(), t.TempDir()
	makeSource(t, src)
	if err := copyTree(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	inodes := map[uint64]string{}
	err := filepath.Walk(src, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		compare(t, rel, path, filepath.Join(dst, rel), inodes)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, "sparse"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("sparse file copy allocates %d bytes for 6 bytes of data", st.Blocks*512)
	}
	b, err := os.ReadFile(filepath.Join(dst, "sparse"))
	if err != nil || !bytes.Equal(b[32<<20:32<<20+6], []byte("middle")) || len(b) != 64<<20 {
		t.Errorf("sparse file copy has wrong content (%d bytes, %v)", len(b), err)
	}
}

// compare checks one copied path against its source. Hard-linked sources
// must map to one copied inode.
func compare(t *testing.T, rel, src, dst string, inodes map[uint64]string) {
	t.Helper()
	var s, d unix.Stat_t
	if err := unix.Lstat(src, &s); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(dst, &d); err != nil {
		t.Fatalf("%s: not copied: %v", rel, err)
	}
	if s.Mode != d.Mode || s.Uid != d.Uid || s.Gid != d.Gid || s.Rdev != d.Rdev || s.Size != d.Size {
		t.Errorf("%s: copied mode %#o owner %d:%d rdev %d size %d, source %#o %d:%d %d %d",
			rel, d.Mode, d.Uid, d.Gid, d.Rdev, d.Size, s.Mode, s.Uid, s.Gid, s.Rdev, s.Size)
	}
	if s.Mtim != d.Mtim {
		t.Errorf("%s: mtime %v, source %v", rel, d.Mtim, s.Mtim)
	}
	if s.Nlink > 1 && s.Mode&unix.S_IFMT != unix.S_IFDIR {
		if first, ok := inodes[s.Ino]; ok {
			var f unix.Stat_t
			if err := unix.Lstat(first, &f); err == nil && f.Ino != d.Ino {
				t.Errorf("%s: hard link to %s became a separate file", rel, first)
			}
		}
		inodes[s.Ino] = dst
	}
	for _, name := range []string{"user.k", "trusted.k"} {
		sv, serr := getXattr(src, name)
		dv, derr := getXattr(dst, name)
		if (serr == nil) != (derr == nil) || !bytes.Equal(sv, dv) {
			t.Errorf("%s: xattr %s = %q (%v), source %q (%v)", rel, name, dv, derr, sv, serr)
		}
	}
}

func TestCopyDataFallbacks(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("0123456789"), 100000)
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := unix.Open(src, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	for name, copyFn := range map[string]func(out int) error{
		"reflink-or-sparse": func(out int) error { return (&copier{reflink: true}).copyData(in, out, int64(len(data))) },
		"read-write":        func(out int) error { return copyRangeRW(in, out, 0, int64(len(data))) },
	} {
		dst := filepath.Join(dir, name)
		out, err := unix.Open(dst, unix.O_WRONLY|unix.O_CREAT, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		err = copyFn(out)
		unix.Close(out)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: copy differs from source (%d bytes, %v)", name, len(got), err)
		}
	}
}
