// Package testsuite is the behaviour every snapshotter must show, run
// against real mounts: overlay, native and the proxy snapshotter all pass
// the same suite. It needs root, since it mounts what snapshotters return.
package testsuite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/snapshots"
	"golang.org/x/sys/unix"
)

// NewFunc opens a snapshotter keeping its state in root. The returned func
// closes it; the suite calls NewFunc again on the same root to check that
// state survives a close.
type NewFunc func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error)

// Open is the NewFunc of a snapshotter whose constructor takes a root and
// options, opened each time with opts and closed by its own Close.
func Open[S snapshots.Snapshotter, O any](newFn func(root string, opts ...O) (S, error), opts ...O) NewFunc {
	return func(_ context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		s, err := newFn(root, opts...)
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	}
}

// testCase is one behaviour check on a fresh snapshotter.
type testCase struct {
	name string
	fn   func(ctx context.Context, t *testing.T, e *env)
}

var cases = []testCase{
	{"Basic", testBasic},
	{"StatKinds", testStatKinds},
	{"Mounts", testMounts},
	{"KeyConflicts", testKeyConflicts},
	{"BadParents", testBadParents},
	{"CommitRules", testCommitRules},
	{"Remove", testRemove},
	{"ConcurrentPrepare", testConcurrentPrepare},
	{"Usage", testUsage},
	{"Update", testUpdate},
	{"Whiteouts", testWhiteouts},
	{"Metadata", testMetadata},
	{"ViewReadOnly", testViewReadOnly},
	{"RootPermission", testRootPermission},
	{"Layers128", testLayers128},
	{"Walk", testWalk},
	{"Reopen", testReopen},
	{"CloseTwice", testCloseTwice},
}

// Run runs the suite against the snapshotter made by newSnapshotter; name
// labels temporary directories. Subtests run in parallel, each with its
// own root; at the end no mount may be left under any of them.
func Run(t *testing.T, name string, newSnapshotter NewFunc) {
	RequireRoot(t)
	base, err := os.MkdirTemp("", "berth-suite-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("Suite", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				runCase(t, base, newSnapshotter, c)
			})
		}
	})
	checkNoMounts(t, base)
}

// RequireRoot skips the test when not root, or fails it when CI=true.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root to mount snapshots")
	}
	t.Skip("needs root to mount snapshots")
}

// checkNoMounts fails the test if anything is still mounted under base,
// detaches it so nothing is left behind, and removes base.
func checkNoMounts(t *testing.T, base string) {
	points, err := mount.MountedUnder(base)
	if err != nil {
		t.Error(err)
	}
	if len(points) > 0 {
		t.Errorf("mounts left behind: %q", points)
		if err := mount.UnmountRecursive(base, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	}
	if err := os.RemoveAll(base); err != nil {
		t.Errorf("remove suite directory: %v", err)
	}
}

// env is what a test case works with.
type env struct {
	sn       snapshots.Snapshotter
	close    func() error
	root     string // the snapshotter's
	work     string // mount points and scratch trees
	newFn    NewFunc
	mountSeq int
}

func runCase(t *testing.T, base string, newFn NewFunc, c testCase) {
	dir, err := os.MkdirTemp(base, c.name+"-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{root: filepath.Join(dir, "root"), work: filepath.Join(dir, "work"), newFn: newFn}
	for _, d := range []string{e.root, e.work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	e.open(ctx, t)
	defer func() {
		if err := e.close(); err != nil {
			t.Errorf("close snapshotter: %v", err)
		}
		if points, _ := mount.MountedUnder(dir); len(points) > 0 {
			t.Errorf("test left mounts behind: %q", points)
			_ = mount.UnmountRecursive(dir, unix.MNT_DETACH)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove test directory: %v", err)
		}
	}()
	c.fn(ctx, t, e)
}

func (e *env) open(ctx context.Context, t *testing.T) {
	t.Helper()
	sn, closeFn, err := e.newFn(ctx, e.root)
	if err != nil {
		t.Fatalf("open snapshotter: %v", err)
	}
	e.sn, e.close = sn, closeFn
}

// reopen closes the snapshotter and opens a new one on the same root.
func (e *env) reopen(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := e.close(); err != nil {
		t.Fatalf("close snapshotter: %v", err)
	}
	e.open(ctx, t)
}

// withMounted mounts mounts on a fresh directory, calls f with it, and
// unmounts whatever f does (t.Fatal included).
func (e *env) withMounted(t *testing.T, mounts []mount.Mount, f func(dir string)) {
	t.Helper()
	e.mountSeq++
	dir := filepath.Join(e.work, fmt.Sprintf("mnt-%d", e.mountSeq))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(mounts) == 0 {
		t.Fatal("snapshotter returned no mounts")
	}
	if err := mount.All(mounts, dir); err != nil {
		_ = mount.UnmountAll(dir, unix.MNT_DETACH)
		t.Fatalf("mount %v: %v", mounts, err)
	}
	defer func() {
		if err := mount.UnmountAll(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove mount point: %v", err)
		}
	}()
	f(dir)
}

// prepare makes an active snapshot and applies changes through its mounts.
func (e *env) prepare(ctx context.Context, t *testing.T, key, parent string, changes ...Change) {
	t.Helper()
	mounts, err := e.sn.Prepare(ctx, key, parent)
	if err != nil {
		t.Fatalf("prepare %q on %q: %v", key, parent, err)
	}
	e.withMounted(t, mounts, func(dir string) {
		if err := apply(dir, changes...); err != nil {
			t.Fatalf("change %q: %v", key, err)
		}
	})
}

// commit makes the committed snapshot name on parent holding changes.
func (e *env) commit(ctx context.Context, t *testing.T, name, parent string, changes ...Change) {
	t.Helper()
	key := name + "-active"
	e.prepare(ctx, t, key, parent, changes...)
	if err := e.sn.Commit(ctx, name, key); err != nil {
		t.Fatalf("commit %q as %q: %v", key, name, err)
	}
}

// checkView mounts a temporary view of parent and compares it with the
// tree the changes build.
func (e *env) checkView(ctx context.Context, t *testing.T, parent string, changes ...Change) {
	t.Helper()
	e.mountSeq++
	key := fmt.Sprintf("check-view-%d", e.mountSeq)
	mounts, err := e.sn.View(ctx, key, parent)
	if err != nil {
		t.Fatalf("view %q: %v", parent, err)
	}
	e.withMounted(t, mounts, func(dir string) {
		if err := checkTree(dir, e.work, changes...); err != nil {
			t.Errorf("view of %q: %v", parent, err)
		}
	})
	if err := e.sn.Remove(ctx, key); err != nil {
		t.Fatalf("remove view %q: %v", key, err)
	}
}

// wantErr fails unless err wraps target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}
