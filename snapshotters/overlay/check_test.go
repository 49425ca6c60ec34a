package overlay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/snapshotters/testsuite"
	"github.com/containerd/errdefs"
)

// TestUnsupportedOnOverlay puts the snapshotter root on an overlay mount,
// which overlayfs refuses as an upper layer: New must say so with an
// error wrapping ErrUnsupported and leave no mount behind.
func TestUnsupportedOnOverlay(t *testing.T) {
	testsuite.RequireRoot(t)
	dir := t.TempDir()
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	merged := filepath.Join(dir, "merged")
	m := mount.Mount{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + filepath.Join(dir, "lower"),
		"upperdir=" + filepath.Join(dir, "upper"),
		"workdir=" + filepath.Join(dir, "work"),
	}}
	if err := m.Mount(merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mount.UnmountAll(merged, 0); err != nil {
			t.Error(err)
		}
	})
	root := filepath.Join(merged, "root")
	s, err := New(root)
	if err == nil {
		s.Close()
		t.Fatal("overlay snapshotter opened on an overlay mount")
	}
	if !errors.Is(err, ErrUnsupported) || !errdefs.IsNotImplemented(err) {
		t.Fatalf("error %v does not wrap ErrUnsupported and ErrNotImplemented", err)
	}
	if !strings.Contains(err.Error(), root) {
		t.Errorf("error %q does not name the root", err)
	}
	if points, _ := mount.MountedUnder(root); len(points) != 0 {
		t.Errorf("check left mounts: %q", points)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("check left files in the root: %v", entries)
	}
}

func TestDType(t *testing.T) {
	if err := checkDType(t.TempDir()); err != nil {
		t.Fatalf("d_type check on the test filesystem: %v", err)
	}
	buf := []byte{}
	if _, ok := direntType(buf, "x"); ok {
		t.Error("found an entry in an empty buffer")
	}
	// A record with a length shorter than its header is rejected.
	bad := make([]byte, 24)
	bad[16] = 3
	if _, ok := direntType(bad, ""); ok {
		t.Error("accepted a malformed dirent record")
	}
}

func TestMountOptions(t *testing.T) {
	testsuite.RequireRoot(t)
	if _, err := New(t.TempDir(), WithMountOptions("upperdir=/x")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("layer option accepted: %v", err)
	}
	// An option the kernel refuses makes the check fail: it mounts with
	// the options the snapshotter will use.
	_, err := New(t.TempDir(), WithMountOptions("no_such_option"))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown mount option: got %v, want ErrUnsupported", err)
	}
	s, err := New(t.TempDir(), WithMountOptions("xino=off"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	parent := ""
	for _, name := range []string{"a", "b"} {
		if _, err := s.Prepare(ctx, name+"-active", parent); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, name, name+"-active"); err != nil {
			t.Fatal(err)
		}
		parent = name
	}
	mounts, err := s.Prepare(ctx, "c", parent)
	if err != nil {
		t.Fatal(err)
	}
	opts := strings.Join(mounts[0].Options, ",")
	for _, want := range append(defaultOptions(), "xino=off") {
		if !strings.Contains(opts, want) {
			t.Errorf("overlay options %q lack %q", opts, want)
		}
	}
}
