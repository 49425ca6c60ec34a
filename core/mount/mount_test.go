package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testutil/require"
)

// mountOn mounts m on a fresh directory and unmounts it when the test ends.
func mountOn(t *testing.T, target string, mount func() error) {
	t.Helper()
	if err := mount(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(target, 0); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	})
}

func TestParseOptions(t *testing.T) {
	flags, data := ParseOptions([]string{"ro", "rbind", "nosuid", "lowerdir=/a:/b", "index=off", "rw"})
	if want := uintptr(unix.MS_BIND | unix.MS_REC | unix.MS_NOSUID); flags != want {
		t.Errorf("flags = %#x, want %#x (rw after ro clears MS_RDONLY)", flags, want)
	}
	if data != "lowerdir=/a:/b,index=off" {
		t.Errorf("data = %q", data)
	}
}

func TestBindReadOnly(t *testing.T) {
	require.Root(t)
	src, target := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := Mount{Type: "bind", Source: src, Options: []string{"ro", "rbind"}}
	mountOn(t, target, func() error { return m.Mount(target) })
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "x" {
		t.Fatalf("read through bind mount: %q, %v", b, err)
	}
	err := os.WriteFile(filepath.Join(target, "g"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to read-only bind mount: got %v, want EROFS", err)
	}
}

func TestParseOverlayData(t *testing.T) {
	d, err := parseOverlayData(`index=off,lowerdir=/x/a\:b:/x/c,upperdir=/x/u,workdir=/x/w,userxattr`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/x/a:b", "/x/c"}; strings.Join(d.lower, "|") != strings.Join(want, "|") {
		t.Errorf("lower = %q, want %q", d.lower, want)
	}
	if got := d.commonDir(); got != "/x" {
		t.Errorf("commonDir = %q, want /x", got)
	}
	want := `lowerdir=a\:b:c,index=off,upperdir=u,workdir=w,userxattr`
	if got := d.relativeTo("/x"); got != want {
		t.Errorf("relativeTo = %q, want %q", got, want)
	}
	if _, err := parseOverlayData("upperdir=/u"); err == nil {
		t.Error("overlay data without lowerdir accepted")
	}
	if _, err := parseOverlayData("lowerdir=/a::/b"); err == nil {
		t.Error("data-only layers accepted in long option parsing")
	}
}

func TestCommonDirRoot(t *testing.T) {
	d := overlayData{lower: []string{"/a/x", "/b/y"}}
	if got := d.commonDir(); got != "/" {
		t.Fatalf("commonDir = %q, want /", got)
	}
	if got := d.relativeTo("/"); got != "lowerdir=a/x:b/y" {
		t.Fatalf("relativeTo(/) = %q", got)
	}
}

// makeLayers creates n lower layers in a directory with a name long enough
// that their absolute paths overflow a page (as a snapshotter root deep in
// the filesystem does); layer i holds file "i" and writes
// its number into "top", so the nearest layer must win.
func makeLayers(t *testing.T, dir string, n int) []string {
	t.Helper()
	long := strings.Repeat("l", 48)
	layers := make([]string, n)
	for i := range n {
		layer := filepath.Join(dir, long, fmt.Sprint(i))
		if err := os.MkdirAll(layer, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(layer, fmt.Sprint(i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(layer, "top"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		layers[n-1-i] = layer // nearest (highest number) first
	}
	return layers
}

func checkLayers(t *testing.T, target string, n int) {
	t.Helper()
	for i := range n {
		b, err := os.ReadFile(filepath.Join(target, fmt.Sprint(i)))
		if err != nil || string(b) != fmt.Sprint(i) {
			t.Fatalf("layer %d file through overlay: %q, %v", i, b, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(target, "top")); err != nil || string(b) != fmt.Sprint(n-1) {
		t.Fatalf("top file = %q, %v; want the nearest layer's %d", b, err, n-1)
	}
}

func longOverlay(t *testing.T, n int, active bool) (Mount, string) {
	dir := t.TempDir()
	layers := makeLayers(t, dir, n)
	opts := []string{"lowerdir=" + strings.Join(layers, ":")}
	if active {
		for _, d := range []string{"upper", "work"} {
			if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		opts = append(opts, "upperdir="+filepath.Join(dir, "upper"), "workdir="+filepath.Join(dir, "work"))
	} else {
		opts = append(opts, "ro")
	}
	m := Mount{Type: "overlay", Source: "overlay", Options: opts}
	if _, data := ParseOptions(m.Options); len(data) < pageSize {
		t.Fatalf("test options are only %d bytes; they must overflow a page", len(data))
	}
	return m, dir
}

func TestOverlay128LayersAuto(t *testing.T) {
	require.Root(t)
	m, dir := longOverlay(t, 128, true)
	target := t.TempDir()
	mountOn(t, target, func() error { return m.Mount(target) })
	checkLayers(t, target, 128)
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "upper", "new")); err != nil {
		t.Fatalf("write did not reach upperdir: %v", err)
	}
}

func TestOverlay128LayersRelative(t *testing.T) {
	require.Root(t)
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := longOverlay(t, 128, false)
	flags, data := ParseOptions(m.Options)
	d, err := parseOverlayData(data)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	mountOn(t, target, func() error { return mountOverlayRelative("overlay", target, flags, d) })
	checkLayers(t, target, 128)
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to read-only overlay: got %v, want EROFS", err)
	}
	if now, _ := os.Getwd(); now != cwd {
		t.Fatalf("working directory changed from %s to %s", cwd, now)
	}
}

func TestOverlay128LayersFsconfig(t *testing.T) {
	require.Root(t)
	if !hasLowerdirPlus() {
		t.Skip("kernel overlayfs has no fsconfig lowerdir+ (needs Linux 6.8)")
	}
	m, _ := longOverlay(t, 128, false)
	flags, data := ParseOptions(m.Options)
	d, err := parseOverlayData(data)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	mountOn(t, target, func() error { return mountOverlayFsconfig("overlay", target, flags, d) })
	checkLayers(t, target, 128)
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to read-only overlay: got %v, want EROFS", err)
	}
}

func TestOverlayFsconfigReportsKernelMessage(t *testing.T) {
	require.Root(t)
	if !hasLowerdirPlus() {
		t.Skip("kernel overlayfs has no fsconfig lowerdir+ (needs Linux 6.8)")
	}
	d := overlayData{lower: []string{filepath.Join(t.TempDir(), "missing")}}
	err := mountOverlayFsconfig("overlay", t.TempDir(), 0, d)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("mount of a missing layer: got %v, want an error naming it", err)
	}
}

func TestUnmountRecursive(t *testing.T) {
	require.Root(t)
	src, target := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	bind := Mount{Type: "bind", Source: src, Options: []string{"rbind"}}
	if err := bind.Mount(target); err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(target, "sub")
	if err := (Mount{Type: "tmpfs", Source: "tmpfs"}).Mount(inner); err != nil {
		_ = UnmountAll(target, unix.MNT_DETACH)
		t.Fatal(err)
	}
	points, err := MountedUnder(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(points) != 2 || points[0] != inner {
		t.Errorf("MountedUnder = %q, want the inner mount first of two", points)
	}
	if err := UnmountRecursive(target, 0); err != nil {
		t.Fatal(err)
	}
	if points, err := MountedUnder(target); err != nil || len(points) != 0 {
		t.Fatalf("after UnmountRecursive: %q, %v", points, err)
	}
}
