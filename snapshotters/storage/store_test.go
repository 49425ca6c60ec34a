package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/core/snapshots"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func openStore(t *testing.T, root string) *Store {
	t.Helper()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeFill fills a new snapshot with one file.
func writeFill(_ context.Context, _ Snapshot, dir string) error {
	return os.WriteFile(filepath.Join(dir, "fs", "data"), []byte(strings.Repeat("d", 1<<16)), 0o644)
}

// createActive creates the active snapshot key, filled by writeFill.
func createActive(t *testing.T, s *Store, key string) Snapshot {
	t.Helper()
	snap, err := s.Create(context.Background(), snapshots.KindActive, key, "", false, writeFill)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// entries lists <root>/snapshots.
func entries(t *testing.T, root string) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(root, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestRemoveSetsAsideThenCleans(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	ctx := context.Background()
	snap, err := s.Create(ctx, snapshots.KindActive, "k", "", true, writeFill)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Work(snap.ID))); err != nil {
		t.Fatalf("active snapshot asked for a work directory: %v", err)
	}
	if err := s.Remove(ctx, "k", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.FS(snap.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("layer still in place after Remove: %v", err)
	}
	if err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, root); len(got) != 0 {
		t.Fatalf("after cleanup the snapshot directory holds %q", got)
	}
}

func TestSyncRemove(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	ctx := context.Background()
	createActive(t, s, "k")
	if err := s.Remove(ctx, "k", true); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, root); len(got) != 0 {
		t.Fatalf("after a synchronous remove the snapshot directory holds %q", got)
	}
}

func TestFailedFillLeavesNothing(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	ctx := context.Background()
	boom := errors.New("boom")
	_, err := s.Create(ctx, snapshots.KindActive, "k", "", false, func(ctx context.Context, snap Snapshot, dir string) error {
		if err := writeFill(ctx, snap, dir); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("create with a failing fill: %v", err)
	}
	if _, err := s.Stat(ctx, "k"); !errdefs.IsNotFound(err) {
		t.Fatalf("stat after a failed create: %v", err)
	}
	// A refused record (taken key) leaves nothing either.
	createActive(t, s, "k2")
	if _, err := s.Create(ctx, snapshots.KindActive, "k2", "", false, writeFill); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("create of a taken key: %v", err)
	}
	if err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, root); len(got) != 1 {
		t.Fatalf("after failed creations the snapshot directory holds %q, want one layer", got)
	}
}

// TestSweepAfterCrash leaves what a crash could (a half-made directory,
// a layer without a record) and reopens: both go, recorded layers stay.
func TestSweepAfterCrash(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	snap := createActive(t, s, "k")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"999/fs", "new-123/fs"} {
		if err := os.MkdirAll(filepath.Join(root, "snapshots", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, root)
	if err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, root); len(got) != 1 || got[0] != "1" {
		t.Fatalf("after reopen the snapshot directory holds %q, want only the recorded layer", got)
	}
	if _, err := os.Stat(filepath.Join(s.FS(snap.ID), "data")); err != nil {
		t.Fatalf("recorded layer lost its data: %v", err)
	}
}

// TestInstallDisplacesStale puts a stray directory where the next id's
// layer goes: creation must still succeed, with a fresh layer.
func TestInstallDisplacesStale(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	if err := os.MkdirAll(filepath.Join(root, "snapshots", "1", "fs", "stale"), 0o755); err != nil {
		t.Fatal(err)
	}
	snap := createActive(t, s, "k")
	if snap.ID != 1 {
		t.Fatalf("first snapshot got id %d", snap.ID)
	}
	if _, err := os.Stat(filepath.Join(s.FS(1), "stale")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale content in a new layer: %v", err)
	}
}

func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(f, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	sparse, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sparse.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	sparse.Close()
	u, err := DiskUsage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if u.Inodes != 3 {
		t.Errorf("inodes = %d, want 3 (directory, linked file once, sparse file)", u.Inodes)
	}
	if u.Size < 8192 || u.Size > 8192+st.Blocks*512+64<<10 {
		t.Errorf("size = %d: want the linked file once and nothing for the hole", u.Size)
	}
}

// TestBackgroundRemoval leaves a removed layer to the background deleter,
// which must delete it without Cleanup being called.
func TestBackgroundRemoval(t *testing.T) {
	root := t.TempDir()
	s := openStore(t, root)
	ctx := context.Background()
	createActive(t, s, "k")
	if err := s.Remove(ctx, "k", false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(entries(t, root)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("removed layer still there: %q", entries(t, root))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
