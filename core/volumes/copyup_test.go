package volumes_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/volumes"
	"github.com/berthd/berth/internal/testutil/require"
)

// entry is what copy-up must keep of one file.
type entry struct {
	Mode     fs.FileMode
	UID, GID uint32
	Size     int64
	MTime    int64
	Link     string
	Data     string
	Xattr    string
}

// describe lists a tree by relative path; hard links show as the path of
// the first name of their inode.
func describe(t *testing.T, root string) (map[string]entry, map[string]string) {
	t.Helper()
	out := map[string]entry{}
	links := map[string]string{}
	first := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		info, _ := d.Info()
		e := entry{Mode: info.Mode(), UID: st.Uid, GID: st.Gid, Size: st.Size, MTime: st.Mtim.Sec}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			e.Link, _ = os.Readlink(p)
			e.MTime = 0 // symlink times are not worth comparing
		case info.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			e.Data = string(b)
			if st.Nlink > 1 {
				if f, ok := first[st.Ino]; ok {
					links[rel] = f
				} else {
					first[st.Ino] = rel
				}
			}
			buf := make([]byte, 64)
			if n, err := unix.Lgetxattr(p, "user.berth", buf); err == nil {
				e.Xattr = string(buf[:n])
			}
		case info.IsDir():
			e.Size, e.MTime = 0, 0 // directory sizes and times depend on the filesystem and on entry order
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, links
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// imageTree builds an image directory with every kind of entry copy-up
// must keep.
func imageTree(t *testing.T, dir string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, "sub", "deeper"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "file.txt"), []byte("hello"), 0o640))
	must(t, os.Chown(filepath.Join(dir, "file.txt"), 1001, 1002))
	must(t, os.WriteFile(filepath.Join(dir, "setuid"), []byte("#!/bin/sh\n"), 0o755))
	must(t, unix.Chmod(filepath.Join(dir, "setuid"), 0o4755))
	must(t, unix.Chmod(filepath.Join(dir, "sub"), 0o2775))
	must(t, os.Chown(filepath.Join(dir, "sub"), 0, 50))
	must(t, os.WriteFile(filepath.Join(dir, "sub", "deeper", "n"), []byte("nested"), 0o600))
	must(t, os.Chown(filepath.Join(dir, "sub", "deeper", "n"), 65534, 65534))
	must(t, os.Symlink("../etc/passwd", filepath.Join(dir, "rel-link")))
	must(t, os.Symlink("/etc/shadow", filepath.Join(dir, "abs-link")))
	must(t, os.Lchown(filepath.Join(dir, "abs-link"), 7, 8))
	must(t, os.WriteFile(filepath.Join(dir, "hard1"), []byte("linked"), 0o644))
	must(t, os.Link(filepath.Join(dir, "hard1"), filepath.Join(dir, "hard2")))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o620))
	if err := unix.Lsetxattr(filepath.Join(dir, "file.txt"), "user.berth", []byte("kept"), 0); err != nil {
		t.Logf("no user xattrs here (%v): not checked", err)
	}
	must(t, os.Chtimes(filepath.Join(dir, "file.txt"), time.Unix(1000, 0), time.Unix(1000, 0)))
	must(t, os.Chown(dir, 1000, 1000))
	must(t, os.Chmod(dir, 0o750))
}

func TestCopyUp(t *testing.T) {
	require.Root(t)
	rootfs := t.TempDir()
	image := filepath.Join(rootfs, "var", "lib", "app")
	must(t, os.MkdirAll(image, 0o755))
	imageTree(t, image)
	// The volume is mounted at /data, a symlink in the image.
	must(t, os.Symlink("var/lib/app", filepath.Join(rootfs, "data")))
	data := t.TempDir()

	copied, err := volumes.CopyUp(context.Background(), rootfs, "/data", data)
	if err != nil || !copied {
		t.Fatalf("CopyUp = %v, %v", copied, err)
	}
	want, wantLinks := describe(t, image)
	got, gotLinks := describe(t, data)
	if !reflect.DeepEqual(got, want) {
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("%s: got %+v, want %+v", k, got[k], want[k])
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: extra entry", k)
			}
		}
	}
	if !reflect.DeepEqual(gotLinks, wantLinks) || len(gotLinks) != 1 {
		t.Errorf("hard links: got %v, want %v", gotLinks, wantLinks)
	}
	var st unix.Stat_t
	must(t, unix.Stat(data, &st))
	if st.Uid != 1000 || st.Gid != 1000 || st.Mode&07777 != 0o750 {
		t.Errorf("volume root: uid %d gid %d mode %o, want the image directory's 1000:1000 0750", st.Uid, st.Gid, st.Mode&07777)
	}

	// Once the volume holds something, later mounts leave it alone.
	must(t, os.WriteFile(filepath.Join(image, "added-later"), nil, 0o644))
	if copied, err := volumes.CopyUp(context.Background(), rootfs, "/data", data); err != nil || copied {
		t.Errorf("second CopyUp = %v, %v", copied, err)
	}
	if _, err := os.Lstat(filepath.Join(data, "added-later")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a non-empty volume was copied into")
	}
}

func TestCopyUpNothingToCopy(t *testing.T) {
	rootfs := t.TempDir()
	must(t, os.WriteFile(filepath.Join(rootfs, "file"), []byte("x"), 0o644))
	must(t, os.MkdirAll(filepath.Join(rootfs, "empty"), 0o711))
	// The image points /evil at a host directory full of secrets: copy-up
	// must look for it inside the rootfs, where it does not exist.
	host := t.TempDir()
	must(t, os.WriteFile(filepath.Join(host, "secret"), []byte("host only"), 0o600))
	must(t, os.Symlink(host, filepath.Join(rootfs, "evil")))
	must(t, os.Symlink("../../../../../../"+host, filepath.Join(rootfs, "evil-relative")))
	for _, dst := range []string{"/missing", "/file", "/evil", "/evil-relative", "/evil/secret"} {
		data := t.TempDir()
		copied, err := volumes.CopyUp(context.Background(), rootfs, dst, data)
		entries, _ := os.ReadDir(data)
		if err != nil || copied || len(entries) != 0 {
			t.Errorf("CopyUp(%s) = %v, %v, volume holds %v", dst, copied, err, entries)
		}
	}
	// An empty image directory still gives the volume its mode.
	data := t.TempDir()
	copied, err := volumes.CopyUp(context.Background(), rootfs, "/empty", data)
	st, _ := os.Stat(data)
	if err != nil || !copied || st.Mode().Perm() != 0o711 {
		t.Errorf("CopyUp of an empty directory = %v, %v, mode %v", copied, err, st.Mode())
	}
	if _, err := volumes.CopyUp(context.Background(), rootfs, "/x", filepath.Join(rootfs, "no-volume")); err == nil {
		t.Error("a missing volume directory is not an error")
	}
}

// BenchmarkCopyUp fills a volume from an image directory of 2000 small
// files and one of 32 MiB.
func BenchmarkCopyUp(b *testing.B) {
	rootfs := b.TempDir()
	src := filepath.Join(rootfs, "data")
	for i := range 2000 {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", i%40))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), make([]byte, 2048), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "big"), make([]byte, 32<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(2000*2048 + 32<<20)
	for b.Loop() {
		b.StopTimer()
		data := filepath.Join(b.TempDir(), "_data")
		os.Mkdir(data, 0o755)
		b.StartTimer()
		if copied, err := volumes.CopyUp(context.Background(), rootfs, "/data", data); err != nil || !copied {
			b.Fatal(copied, err)
		}
	}
}
