package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/volumes"
	"github.com/berthd/berth/internal/testutil/require"
)

func newDriver(t *testing.T) *Driver {
	t.Helper()
	d, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Whatever a failing test leaves mounted goes before the folder does.
	t.Cleanup(func() { mount.UnmountRecursive(d.Root(), unix.MNT_DETACH) })
	return d
}

func mountsAt(t *testing.T, path string) int {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func TestTmpfsVolumeSizeLimit(t *testing.T) {
	require.Root(t)
	ctx := context.Background()
	d := newDriver(t)
	v := volumes.Volume{Namespace: "ns", Name: "small", Options: map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=64k,mode=0770"}}
	data, err := d.Create(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if mountsAt(t, data) != 0 {
		t.Fatal("a tmpfs volume is mounted before any container uses it")
	}
	for range 2 { // the second Mount finds it mounted and does nothing
		if p, err := d.Mount(ctx, v); err != nil || p != data {
			t.Fatalf("Mount = %s, %v", p, err)
		}
	}
	if n := mountsAt(t, data); n != 1 {
		t.Fatalf("%d mounts at %s, want 1", n, data)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(data, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("not a tmpfs: %v", err)
	}
	if fi, _ := os.Stat(data); fi.Mode().Perm() != 0o770 {
		t.Errorf("tmpfs mode %v, want 0770", fi.Mode().Perm())
	}
	// Writing past the size fails with ENOSPC.
	f, err := os.Create(filepath.Join(data, "big"))
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.Write(make([]byte, 128<<10))
	f.Close()
	if !errors.Is(werr, unix.ENOSPC) {
		t.Errorf("writing 128k into a 64k tmpfs volume: %v, want ENOSPC", werr)
	}
	if size, err := d.Size(ctx, v); err != nil || size <= 0 || size > 64<<10 {
		t.Errorf("Size = %d, %v", size, err)
	}
	if err := d.Unmount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if mountsAt(t, data) != 0 {
		t.Error("still mounted after Unmount")
	}
	if size, err := d.Size(ctx, v); err != nil || size != 0 {
		t.Errorf("Size when unmounted = %d, %v", size, err)
	}
	// Removal unmounts first.
	if _, err := d.Mount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(data)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume directory left: %v", err)
	}
}

func TestBindVolume(t *testing.T) {
	require.Root(t)
	ctx := context.Background()
	d := newDriver(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "keep"), []byte("host data"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The device is given through a symlink: it is resolved and pinned.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(host, link); err != nil {
		t.Fatal(err)
	}
	v := volumes.Volume{Namespace: "ns", Name: "hostdir", Options: map[string]string{"type": "none", "o": "bind", "device": link}}
	data, err := d.Create(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Mount(ctx, v); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(data, "keep")); err != nil || string(b) != "host data" {
		t.Errorf("bind content %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(data, "written"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(host, "written")); err != nil {
		t.Errorf("a write through the volume did not reach the host directory: %v", err)
	}
	if size, err := d.Size(ctx, v); err != nil || size != -1 {
		t.Errorf("Size of a bind volume = %d, %v; want -1", size, err)
	}
	// Removing the volume never deletes the host's files.
	if err := d.Remove(ctx, v); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"keep", "written"} {
		if _, err := os.Stat(filepath.Join(host, f)); err != nil {
			t.Errorf("host file %s lost with the volume: %v", f, err)
		}
	}

	// o=bind,ro gives a read-only view.
	ro := volumes.Volume{Namespace: "ns", Name: "ro", Options: map[string]string{"type": "none", "o": "rbind,ro", "device": host}}
	data, err = d.Create(ctx, ro)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Mount(ctx, ro); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "nope"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a read-only bind volume: %v", err)
	}
	if err := d.Unmount(ctx, ro); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx, ro); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(host); len(entries) != 2 {
		t.Errorf("host directory now holds %v", entries)
	}
}

func TestBindVolumeSourceGoneAtMount(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	host := filepath.Join(t.TempDir(), "h")
	if err := os.Mkdir(host, 0o755); err != nil {
		t.Fatal(err)
	}
	v := volumes.Volume{Namespace: "ns", Name: "gone", Options: map[string]string{"type": "none", "o": "bind", "device": host}}
	if _, err := d.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	os.Remove(host)
	_, err := d.Mount(ctx, v)
	if err == nil || !strings.Contains(err.Error(), "bind source path does not exist: "+host) {
		t.Errorf("Mount of a vanished host directory: %v", err)
	}
}

func TestPlainVolumeSize(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	v := volumes.Volume{Namespace: "ns", Name: "plain"}
	data, err := d.Create(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "a"), make([]byte, 100000), 0o644)
	os.Link(filepath.Join(data, "a"), filepath.Join(data, "b")) // counted once
	size, err := d.Size(ctx, v)
	if err != nil || size < 100000 || size >= 200000 {
		t.Errorf("Size = %d, %v", size, err)
	}
	if size, err := d.Size(ctx, volumes.Volume{Namespace: "ns", Name: "never-made"}); err != nil || size != 0 {
		t.Errorf("Size of a missing volume = %d, %v", size, err)
	}
}
