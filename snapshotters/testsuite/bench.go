package testsuite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/snapshots"
)

// Bench measures the operations image pulls and container starts lean on:
// building a chain of 100 layers (prepare and commit each, with one small
// file written through the mounts) and mounting a view of 128 layers.
func Bench(b *testing.B, name string, newSnapshotter NewFunc) {
	RequireRoot(b)
	b.Run("PrepareCommit100", func(b *testing.B) { benchChain(b, newSnapshotter) })
	b.Run("MountView128", func(b *testing.B) { benchView(b, newSnapshotter) })
}

// benchEnv opens a snapshotter in a fresh directory for one benchmark.
func benchEnv(b *testing.B, newFn NewFunc) snapshots.Snapshotter {
	b.Helper()
	dir, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		b.Fatal(err)
	}
	sn, closeFn, err := newFn(context.Background(), filepath.Join(dir, "root"))
	if err != nil {
		os.RemoveAll(dir)
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := closeFn(); err != nil {
			b.Error(err)
		}
		checkNoMountsB(b, dir)
	})
	return sn
}

func checkNoMountsB(b *testing.B, dir string) {
	if points, err := mount.MountedUnder(dir); err != nil || len(points) > 0 {
		b.Errorf("mounts left behind: %q, %v", points, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Error(err)
	}
}

// buildChain commits n layers named prefix-0..n-1, each adding one file
// written through a real mount, and returns the top name.
func buildChain(ctx context.Context, sn snapshots.Snapshotter, prefix string, n int) (string, error) {
	parent := ""
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		mounts, err := sn.Prepare(ctx, name+"-active", parent)
		if err != nil {
			return "", err
		}
		err = mount.WithTempMount(mounts, func(root string) error {
			return os.WriteFile(filepath.Join(root, name), []byte(name), 0o644)
		})
		if err != nil {
			return "", err
		}
		if err := sn.Commit(ctx, name, name+"-active"); err != nil {
			return "", err
		}
		parent = name
	}
	return parent, nil
}

// removeChain removes layers prefix-(n-1)..prefix-0.
func removeChain(ctx context.Context, sn snapshots.Snapshotter, prefix string, n int) error {
	for i := n - 1; i >= 0; i-- {
		if err := sn.Remove(ctx, fmt.Sprintf("%s-%d", prefix, i)); err != nil {
			return err
		}
	}
	return nil
}

func benchChain(b *testing.B, newFn NewFunc) {
	sn := benchEnv(b, newFn)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		prefix := fmt.Sprintf("chain%d", i)
		if _, err := buildChain(ctx, sn, prefix, 100); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := removeChain(ctx, sn, prefix, 100); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		i++
	}
}

func benchView(b *testing.B, newFn NewFunc) {
	sn := benchEnv(b, newFn)
	ctx := context.Background()
	top, err := buildChain(ctx, sn, "layer", 128)
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		key := fmt.Sprintf("view%d", i)
		mounts, err := sn.View(ctx, key, top)
		if err != nil {
			b.Fatal(err)
		}
		err = mount.WithTempMount(mounts, func(root string) error {
			_, err := os.Stat(filepath.Join(root, "layer-0"))
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := sn.Remove(ctx, key); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
