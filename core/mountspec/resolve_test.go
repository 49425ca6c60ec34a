package mountspec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testutil/require"
)

// snapshot lists a tree: path -> mode and size, to prove it unchanged.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%v %v %d", info.Mode(), info.ModTime(), info.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hostDir makes a stand-in for a sensitive host directory such as /etc.
func hostDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte("root:x:0:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestResolveDestinationStaysInRootfs(t *testing.T) {
	host := hostDir(t)
	before := snapshot(t, host)
	rootfs := t.TempDir()
	mustSymlink(t, host, filepath.Join(rootfs, "data"))                        // /data -> the "host's /etc"
	mustSymlink(t, "../../../../../../../../etc", filepath.Join(rootfs, "up")) // climbs above the root
	mustSymlink(t, "b", filepath.Join(rootfs, "a"))
	mustSymlink(t, "/c/d", filepath.Join(rootfs, "b"))
	mustSymlink(t, "/nowhere/yet", filepath.Join(rootfs, "dangling"))

	for dst, want := range map[string]string{
		"/data":            host,
		"/data/sub/dir":    host + "/sub/dir",
		"/data/../data/x/": host + "/x",
		"/up":              "/etc",
		"/up/ssl":          "/etc/ssl",
		"/a":               "/c/d",
		"/a/e":             "/c/d/e",
		"/dangling":        "/nowhere/yet",
		"/plain//dir/":     "/plain/dir",
	} {
		got, err := ResolveDestination(rootfs, dst)
		if err != nil {
			t.Errorf("ResolveDestination(%q): %v", dst, err)
			continue
		}
		if got != want {
			t.Errorf("ResolveDestination(%q) = %q, want %q", dst, got, want)
		}
		st, err := os.Lstat(filepath.Join(rootfs, got))
		if err != nil || !st.IsDir() {
			t.Errorf("ResolveDestination(%q): %s is not a directory in the rootfs: %v", dst, got, err)
		}
	}
	if after := snapshot(t, host); !reflect.DeepEqual(before, after) {
		t.Errorf("the host directory changed:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := os.Stat("/c/d"); err == nil {
		t.Error("a directory was created on the host")
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestResolveDestinationErrors(t *testing.T) {
	rootfs := t.TempDir()
	mustSymlink(t, "/", filepath.Join(rootfs, "root"))
	mustSymlink(t, "../..", filepath.Join(rootfs, "sub", "up"))
	mustSymlink(t, "loop2", filepath.Join(rootfs, "loop1"))
	mustSymlink(t, "loop1", filepath.Join(rootfs, "loop2"))
	if err := os.WriteFile(filepath.Join(rootfs, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for dst, want := range map[string]string{
		"relative": `destination "relative" is not an absolute path: invalid argument`,
		"/":        `destination must not be '/': invalid argument`,
		"/root":    `mount destination /root resolves to the container's root: invalid argument`,
		"/sub/up":  `mount destination /sub/up resolves to the container's root: invalid argument`,
		"/file":    `mount destination /file (/file in the container): it exists and is not a directory: invalid argument`,
		"/file/x":  "mount destination /file/x (/file/x in the container):",
		"/loop1":   "mount destination /loop1:",
	} {
		_, err := ResolveDestination(rootfs, dst)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("ResolveDestination(%q) error\n got: %v\nwant: %s", dst, err, want)
		}
	}
	if _, err := ResolveDestination(filepath.Join(rootfs, "missing"), "/x"); err == nil {
		t.Error("a missing rootfs is not an error")
	}
}

func TestResolveFileDestination(t *testing.T) {
	host := hostDir(t)
	before := snapshot(t, host)
	rootfs := t.TempDir()
	mustSymlink(t, filepath.Join(host, "passwd"), filepath.Join(rootfs, "etc", "passwd"))
	mustSymlink(t, filepath.Join(host, "hostname"), filepath.Join(rootfs, "etc", "hostname"))
	if err := os.MkdirAll(filepath.Join(rootfs, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for dst, want := range map[string]string{
		"/etc/resolv.conf": "/etc/resolv.conf",
		"/etc/passwd":      host + "/passwd",
		"/etc/hostname":    host + "/hostname",
		"/new/dir/file":    "/new/dir/file",
	} {
		got, err := ResolveFileDestination(rootfs, dst)
		if err != nil {
			t.Errorf("ResolveFileDestination(%q): %v", dst, err)
			continue
		}
		if got != want {
			t.Errorf("ResolveFileDestination(%q) = %q, want %q", dst, got, want)
		}
		st, err := os.Lstat(filepath.Join(rootfs, got))
		if err != nil || !st.Mode().IsRegular() || st.Size() != 0 {
			t.Errorf("ResolveFileDestination(%q): %s is not an empty file in the rootfs: %v %v", dst, got, st, err)
		}
	}
	if after := snapshot(t, host); !reflect.DeepEqual(before, after) {
		t.Errorf("the host directory changed:\nbefore %v\nafter  %v", before, after)
	}
	_, err := ResolveFileDestination(rootfs, "/dir")
	if want := "mount destination /dir (/dir in the container): it is a directory but the mount source is a file: invalid argument"; err == nil || err.Error() != want {
		t.Errorf("file over a directory: %v", err)
	}
}

func TestResolveBindSource(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "real", filepath.Join(dir, "link"))
	for path, want := range map[string]BindSource{
		real:                            {Path: real, Dir: true},
		dir + "/link/":                  {Path: real, Dir: true},
		dir + "/link/../link/f":         {Path: real + "/f"},
		filepath.Join(dir, "link", "f"): {Path: real + "/f"},
	} {
		got, err := ResolveBindSource(path)
		if err != nil || got != want {
			t.Errorf("ResolveBindSource(%q) = %+v, %v; want %+v", path, got, err, want)
		}
	}
	for path, want := range map[string]string{
		"rel/path":              `bind source path "rel/path" is not absolute: invalid argument`,
		dir + "/missing":        "bind source path does not exist: " + dir + "/missing: invalid argument",
		dir + "/link/missing/x": "bind source path does not exist: " + dir + "/link/missing/x: invalid argument",
	} {
		_, err := ResolveBindSource(path)
		if err == nil || err.Error() != want {
			t.Errorf("ResolveBindSource(%q) error\n got: %v\nwant: %s", path, err, want)
		}
	}
}

func TestOpenBindSourceRefusesSwappedSymlink(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	bs, err := ResolveBindSource(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenBindSource(bs.Path)
	if err != nil {
		t.Fatal(err)
	}
	var want, got unix.Stat_t
	unix.Stat(src, &want)
	unix.Fstat(int(f.Fd()), &got)
	f.Close()
	if want.Ino != got.Ino {
		t.Error("OpenBindSource opened another file")
	}
	// An attacker swaps a directory of the checked path for a symlink to
	// somewhere sensitive.
	secret := hostDir(t)
	if err := os.MkdirAll(filepath.Join(secret, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, secret, filepath.Join(dir, "a"))
	_, err = OpenBindSource(bs.Path)
	if err == nil || !strings.Contains(err.Error(), "a became a symlink after the path was checked") || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("OpenBindSource after the swap: %v", err)
	}
	if _, err := OpenBindSource(dir + "/moved/../moved"); err == nil {
		t.Error("an unclean path is accepted")
	}
}

func TestBindInto(t *testing.T) {
	require.Root(t)
	host := hostDir(t) // what the image's symlink points at on the host
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	mustSymlink(t, host, filepath.Join(rootfs, "data"))
	f, err := OpenBindSource(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	resolved, err := BindInto(f, rootfs, "/data", true, "")
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(rootfs, resolved)
	t.Cleanup(func() {
		if err := unix.Unmount(target, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	if resolved != host {
		t.Errorf("resolved %q, want %q (inside the rootfs)", resolved, host)
	}
	if b, err := os.ReadFile(filepath.Join(target, "hello")); err != nil || string(b) != "from the host" {
		t.Errorf("bind content: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a read-only bind: %v", err)
	}
	if entries, _ := os.ReadDir(host); len(entries) != 1 {
		t.Errorf("the host directory the symlink names changed: %v", entries)
	}

	// A file source binds over a file, created inside the rootfs.
	file := filepath.Join(src, "hello")
	ff, err := OpenBindSource(file)
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	got, err := BindInto(ff, rootfs, "/etc/greeting", false, "rslave")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(rootfs, got), 0) })
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc", "greeting")); err != nil || string(b) != "from the host" {
		t.Errorf("file bind content: %q, %v", b, err)
	}
}
