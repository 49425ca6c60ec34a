package metadata

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/internal/testutil/require"
	"github.com/berthd/berth/snapshotters/native"
	"github.com/berthd/berth/snapshotters/overlay"
	"github.com/berthd/berth/snapshotters/testsuite"
)

// scoped runs a snapshotter in one namespace under one lease, so the
// shared snapshotter suite (which knows nothing of namespaces) exercises
// the namespaced view, with the scheduler collecting garbage behind it.
type scoped struct {
	sn    snapshots.Snapshotter
	ns    string
	lease string
}

func (s scoped) c(ctx context.Context) context.Context {
	return leases.WithLease(namespaces.WithNamespace(ctx, s.ns), s.lease)
}

func (s scoped) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	return s.sn.Stat(s.c(ctx), key)
}
func (s scoped) Update(ctx context.Context, info snapshots.Info, fp ...string) (snapshots.Info, error) {
	return s.sn.Update(s.c(ctx), info, fp...)
}
func (s scoped) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return s.sn.Usage(s.c(ctx), key)
}
func (s scoped) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	return s.sn.Mounts(s.c(ctx), key)
}
func (s scoped) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.sn.Prepare(s.c(ctx), key, parent, opts...)
}
func (s scoped) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.sn.View(s.c(ctx), key, parent, opts...)
}
func (s scoped) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.sn.Commit(s.c(ctx), name, key, opts...)
}
func (s scoped) Remove(ctx context.Context, key string) error { return s.sn.Remove(s.c(ctx), key) }
func (s scoped) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	return s.sn.Walk(s.c(ctx), fn, fs...)
}
func (s scoped) Close() error { return s.sn.Close() }

// suiteOver opens the database over a backing snapshotter made by open.
func suiteOver(open func(root string) (snapshots.Snapshotter, error)) testsuite.NewFunc {
	return func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		backend, err := open(filepath.Join(root, "backend"))
		if err != nil {
			return nil, nil, err
		}
		db, err := Open(filepath.Join(root, "meta.db"))
		if err != nil {
			backend.Close()
			return nil, nil, err
		}
		closeAll := func() error { return errors.Join(db.Close(), backend.Close()) }
		if err := db.Init(ctx, nil, map[string]snapshots.Snapshotter{"backend": backend}); err != nil {
			closeAll()
			return nil, nil, err
		}
		nsctx := namespaces.WithNamespace(ctx, "suite")
		if _, err := db.Leases().Create(nsctx, leases.WithID("suite")); err != nil && !errdefs.IsAlreadyExists(err) {
			closeAll()
			return nil, nil, err
		}
		return scoped{sn: db.Snapshotter("backend"), ns: "suite", lease: "suite"}, closeAll, nil
	}
}

func TestSnapshotterSuiteOverNative(t *testing.T) {
	testsuite.Run(t, "meta-native", suiteOver(func(root string) (snapshots.Snapshotter, error) {
		return native.New(root)
	}))
}

func TestSnapshotterSuiteOverOverlay(t *testing.T) {
	testsuite.RequireRoot(t)
	probe := t.TempDir()
	probeSn, err := overlay.New(probe)
	if err == nil {
		probeSn.Close()
	}
	if errors.Is(err, overlay.ErrUnsupported) {
		require.Missing(t, fmt.Sprintf("overlayfs: %v", err))
	} else if err != nil {
		t.Fatal(err)
	}
	testsuite.Run(t, "meta-overlay", suiteOver(func(root string) (snapshots.Snapshotter, error) {
		return overlay.New(root)
	}))
}

func TestSnapshotKeysIsolatedByNamespace(t *testing.T) {
	e := newEnv(t, manualGC)
	a, _ := e.lease(nsCtx("a"))
	b, _ := e.lease(nsCtx("b"))
	for _, ctx := range []context.Context{a, b} {
		if _, err := e.sn().Prepare(ctx, "rootfs", "", snapshots.WithLabels(map[string]string{"ns": namespaceOf(ctx)})); err != nil {
			t.Fatalf("prepare in %s: %v", namespaceOf(ctx), err)
		}
	}
	for _, ctx := range []context.Context{a, b} {
		info, err := e.sn().Stat(ctx, "rootfs")
		if err != nil || info.Labels["ns"] != namespaceOf(ctx) || info.Kind != snapshots.KindActive {
			t.Errorf("stat in %s: %+v, %v", namespaceOf(ctx), info, err)
		}
	}
	if _, err := e.sn().Stat(nsCtx("c"), "rootfs"); !errdefs.IsNotFound(err) {
		t.Errorf("stat in a third namespace: %v", err)
	}
	backing := e.backingSnapshots()
	if len(backing) != 2 || !strings.HasPrefix(backing[0], "a/") || !strings.HasPrefix(backing[1], "b/") {
		t.Errorf("backing keys %q: want one per namespace, prefixed by it", backing)
	}
	if err := e.sn().Remove(a, "rootfs"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn().Stat(b, "rootfs"); err != nil {
		t.Errorf("b's snapshot after a removed its own: %v", err)
	}
	st := e.gc()
	if got := st.Snapshots["native"]; len(got) != 1 || !strings.HasPrefix(got[0], "a/") {
		t.Errorf("collection removed %q, want a's backing snapshot", got)
	}
}

func namespaceOf(ctx context.Context) string {
	ns, _ := namespaces.Namespace(ctx)
	return ns
}

func TestCommittedSnapshotSharedAcrossNamespaces(t *testing.T) {
	e := newEnv(t, manualGC)
	a, _ := e.lease(nsCtx("a"))
	b, _ := e.lease(nsCtx("b"))
	commitChain(t, a, e.sn(), "layer", 2, nil)
	if n := len(e.backingSnapshots()); n != 2 {
		t.Fatalf("%d backing snapshots after a's unpack", n)
	}
	// b unpacks the same chain: every layer is found and re-used.
	_, err := e.sn().Prepare(b, "extract-1", "", snapshots.WithLabels(map[string]string{labelSnapshotRef: "layer-1"}))
	wantErr(t, "prepare of a layer another namespace has", err, errdefs.ErrAlreadyExists)
	_, err = e.sn().Prepare(b, "extract-2", "layer-1", snapshots.WithLabels(map[string]string{labelSnapshotRef: "layer-2"}))
	wantErr(t, "prepare of the second layer", err, errdefs.ErrAlreadyExists)
	info, err := e.sn().Stat(b, "layer-2")
	if err != nil || info.Kind != snapshots.KindCommitted || info.Parent != "layer-1" {
		t.Fatalf("b's shared layer: %+v, %v", info, err)
	}
	if _, err := e.sn().Stat(b, "extract-1"); !errdefs.IsNotFound(err) {
		t.Errorf("the extraction key was created: %v", err)
	}
	if n := len(e.backingSnapshots()); n != 2 {
		t.Errorf("%d backing snapshots after b's unpack, want the 2 shared ones", n)
	}
	// b can build on the shared layer.
	if _, err := e.sn().Prepare(b, "rw", "layer-2"); err != nil {
		t.Fatal(err)
	}
	// A layer with a different parent is not shared.
	c, _ := e.lease(nsCtx("c"))
	_, err = e.sn().Prepare(c, "extract-x", "", snapshots.WithLabels(map[string]string{labelSnapshotRef: "layer-2"}))
	if err != nil {
		t.Errorf("prepare of a same-named layer on another parent: %v", err)
	}
	// a removes its chain; b keeps the layers.
	for _, key := range []string{"layer-2", "layer-1"} {
		if err := e.sn().Remove(a, key); err != nil {
			t.Fatal(err)
		}
	}
	if st := e.gc(); len(st.Snapshots["native"]) != 0 {
		t.Errorf("collection removed %v while b still uses them", st.Snapshots)
	}
	for _, key := range []string{"rw", "layer-2", "layer-1"} {
		if err := e.sn().Remove(b, key); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.sn().Remove(c, "extract-x"); err != nil {
		t.Fatal(err)
	}
	st := e.gc()
	if got := st.Snapshots["native"]; len(got) != 4 {
		t.Errorf("collection removed %q, want all 4", got)
	}
	if left := e.backingSnapshots(); len(left) != 0 {
		t.Errorf("backing snapshots left: %q", left)
	}
}

func TestSnapshotErrorsMatchBackingOnes(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, _ := e.lease(nsCtx("a"))
	top := commitChain(t, ctx, e.sn(), "l", 2, nil)
	wantErr(t, "remove of a parent", e.sn().Remove(ctx, "l-1"), errdefs.ErrFailedPrecondition)
	_, err := e.sn().Prepare(ctx, "x", "missing")
	wantErr(t, "prepare on a missing parent", err, errdefs.ErrNotFound)
	_, err = e.sn().Prepare(ctx, top, "")
	wantErr(t, "prepare of a taken key", err, errdefs.ErrAlreadyExists)
	_, err = e.sn().Prepare(ctx, "", "")
	wantErr(t, "prepare of an empty key", err, errdefs.ErrInvalidArgument)
	if _, err := e.sn().View(ctx, "v", top); err != nil {
		t.Fatal(err)
	}
	_, err = e.sn().Prepare(ctx, "child-of-view", "v")
	wantErr(t, "prepare on a view", err, errdefs.ErrInvalidArgument)
	wantErr(t, "commit of a view", e.sn().Commit(ctx, "c", "v"), errdefs.ErrFailedPrecondition)
	wantErr(t, "commit of a missing key", e.sn().Commit(ctx, "c", "nope"), errdefs.ErrNotFound)
	_, err = e.sn().Mounts(ctx, top)
	wantErr(t, "mounts of a committed snapshot", err, errdefs.ErrFailedPrecondition)
	_, err = e.sn().Stat(context.Background(), top)
	wantErr(t, "stat without namespace", err, errdefs.ErrFailedPrecondition)
	_, err = e.sn().Prepare(leaseCtx(nsCtx("a"), "missing"), "y", "")
	wantErr(t, "prepare under a missing lease", err, errdefs.ErrNotFound)
	if left := e.backingSnapshots(); len(left) != 3 {
		t.Errorf("refused calls left backing snapshots: %q", left)
	}
}

func TestSnapshotLeasesAndCollection(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, l := e.lease(nsCtx("a"))
	commitChain(t, ctx, e.sn(), "leased", 2, nil)
	unleased := nsCtx("a")
	if _, err := e.sn().Prepare(unleased, "loose", ""); err != nil {
		t.Fatal(err)
	}
	res, _ := e.db.Leases().ListResources(ctx, l)
	var keys []string
	for _, r := range res {
		keys = append(keys, r.Type+":"+r.ID)
	}
	slices.Sort(keys)
	if want := []string{"snapshots/native:leased-1", "snapshots/native:leased-2"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("lease resources %q, want %q (extraction keys replaced by their commits)", keys, want)
	}
	st := e.gc()
	if got := nodeKeys(st.Records, gc.ResourceSnapshot); !reflect.DeepEqual(got, []string{"a/native/loose"}) {
		t.Errorf("records removed %q, want the unleased snapshot", got)
	}
	if got := st.Snapshots["native"]; len(got) != 1 || !strings.HasSuffix(got[0], "/loose") {
		t.Errorf("backing snapshots removed %q", got)
	}
	if err := e.db.Leases().Delete(ctx, l); err != nil {
		t.Fatal(err)
	}
	st = e.gc()
	got := st.Snapshots["native"]
	if len(got) != 2 || !strings.HasSuffix(got[0], "/leased-2") || !strings.HasSuffix(got[1], "/leased-1") {
		t.Errorf("backing snapshots removed %q, want the child before its parent", got)
	}
}

func TestSnapshotLabelsAndWalkFilters(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, _ := e.lease(nsCtx("a"))
	commitChain(t, ctx, e.sn(), "base", 1, map[string]string{"x": "1", inheritedSnapshotPrefix + "k": "passed"})
	if _, err := e.sn().Prepare(ctx, "rw", "base-1", snapshots.WithLabels(map[string]string{"x": "2"})); err != nil {
		t.Fatal(err)
	}
	// Only containerd.io/snapshot/ labels reach the backing snapshotter.
	e.native.Walk(context.Background(), func(_ context.Context, info snapshots.Info) error {
		if strings.HasSuffix(info.Name, "/base-1") && !reflect.DeepEqual(info.Labels, map[string]string{inheritedSnapshotPrefix + "k": "passed"}) {
			t.Errorf("backing labels %v", info.Labels)
		}
		return nil
	})
	walk := func(fs ...string) []string {
		var names []string
		if err := e.sn().Walk(ctx, func(_ context.Context, i snapshots.Info) error { names = append(names, i.Name); return nil }, fs...); err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		return names
	}
	for _, c := range []struct {
		filter string
		want   []string
	}{
		{"labels.x==2", []string{"rw"}},
		{"kind==committed", []string{"base-1"}},
		{"parent==base-1", []string{"rw"}},
		{"name~=^ba", []string{"base-1"}},
		{`labels."containerd.io/snapshot.ref"`, []string{"base-1"}},
	} {
		if got := walk(c.filter); !reflect.DeepEqual(got, c.want) {
			t.Errorf("walk %q: %v, want %v", c.filter, got, c.want)
		}
	}
	info, err := e.sn().Update(ctx, snapshots.Info{Name: "rw", Labels: map[string]string{inheritedSnapshotPrefix + "k": "v"}}, "labels."+inheritedSnapshotPrefix+"k")
	if err != nil || info.Labels["x"] != "2" {
		t.Fatalf("update: %+v, %v", info, err)
	}
	rec, _ := e.sn().(*snapshotter).record(ctx, "rw")
	if backing, err := e.native.Stat(context.Background(), rec.bkey); err != nil || backing.Labels[inheritedSnapshotPrefix+"k"] != "v" {
		t.Errorf("inherited label not passed on: %+v, %v", backing, err)
	}
	if u, err := e.sn().Usage(ctx, "base-1"); err != nil || u.Inodes < 1 {
		t.Errorf("usage %+v, %v", u, err)
	}
}

// TestConcurrentUnpacksOfOneLayer races unpackers of the same layer in one
// namespace, each doing what containerd's unpacker does: prepare with the
// snapshot.ref label, commit, and treat errdefs.ErrAlreadyExists as
// success (removing its extraction key).
func TestConcurrentUnpacksOfOneLayer(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, _ := e.lease(nsCtx("a"))
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			key := fmt.Sprintf("extract-%d", i)
			lbls := snapshots.WithLabels(map[string]string{labelSnapshotRef: "layer"})
			_, err := e.sn().Prepare(ctx, key, "", lbls)
			if errdefs.IsAlreadyExists(err) {
				return
			}
			if err != nil {
				errs[i] = err
				return
			}
			if err := e.sn().Commit(ctx, "layer", key, lbls); errdefs.IsAlreadyExists(err) {
				errs[i] = e.sn().Remove(ctx, key)
			} else {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if info, err := e.sn().Stat(ctx, "layer"); err != nil || info.Kind != snapshots.KindCommitted {
		t.Fatalf("layer: %+v, %v", info, err)
	}
	e.gc()
	if got := e.backingSnapshots(); len(got) != 1 {
		t.Errorf("backing snapshots after collection %q, want the one layer", got)
	}
}
