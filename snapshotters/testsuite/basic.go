package testsuite

import (
	"context"
	"reflect"
	"testing"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/snapshots"
	"github.com/containerd/errdefs"
)

var (
	baseLayer = []Change{
		WriteFile("/foo", "foo\n", 0o644),
		Mkdir("/a", 0o755),
		Mkdir("/a/b", 0o755),
		WriteFile("/a/b/c", "c\n", 0o600),
	}
	secondLayer = []Change{
		WriteFile("/foo", "changed\n", 0o644),
		WriteFile("/bar", "bar\n", 0o755),
		Remove("/a/b"),
	}
)

func concat(layers ...[]Change) []Change {
	var all []Change
	for _, l := range layers {
		all = append(all, l...)
	}
	return all
}

// testBasic builds a chain of two committed layers, checking contents
// through mounts at each step, and tears it down child first.
func testBasic(ctx context.Context, t *testing.T, e *env) {
	e.commit(ctx, t, "base", "", baseLayer...)
	if _, err := e.sn.Stat(ctx, "base-active"); !errdefs.IsNotFound(err) {
		t.Errorf("stat of a committed active key: got %v, want not found", err)
	}

	mounts, err := e.sn.Prepare(ctx, "next", "base")
	if err != nil {
		t.Fatal(err)
	}
	e.withMounted(t, mounts, func(dir string) {
		if err := checkTree(dir, e.work, baseLayer...); err != nil {
			t.Fatalf("child before changes: %v", err)
		}
		if err := apply(dir, secondLayer...); err != nil {
			t.Fatal(err)
		}
	})
	if err := e.sn.Commit(ctx, "second", "next"); err != nil {
		t.Fatal(err)
	}
	e.checkView(ctx, t, "second", concat(baseLayer, secondLayer)...)
	e.checkView(ctx, t, "base", baseLayer...)

	info, err := e.sn.Stat(ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	if info.Parent != "base" || info.Kind != snapshots.KindCommitted {
		t.Errorf("second: parent %q kind %v, want base, committed", info.Parent, info.Kind)
	}
	wantErr(t, "remove base with a child", e.sn.Remove(ctx, "base"), errdefs.ErrFailedPrecondition)
	for _, key := range []string{"second", "base"} {
		if err := e.sn.Remove(ctx, key); err != nil {
			t.Fatalf("remove %q: %v", key, err)
		}
	}
}

// testStatKinds checks what Stat says about each kind of snapshot.
func testStatKinds(ctx context.Context, t *testing.T, e *env) {
	labels := snapshots.WithLabels(map[string]string{"k": "v"})
	if _, err := e.sn.Prepare(ctx, "active0", "", labels); err != nil {
		t.Fatal(err)
	}
	if err := e.sn.Commit(ctx, "committed", "active0", snapshots.WithLabels(map[string]string{"c": "1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn.Prepare(ctx, "active", "committed", labels); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn.View(ctx, "view", "committed", labels); err != nil {
		t.Fatal(err)
	}
	want := map[string]snapshots.Info{
		// Labels given at commit replace those of the active snapshot.
		"committed": {Kind: snapshots.KindCommitted, Name: "committed", Labels: map[string]string{"c": "1"}},
		"active":    {Kind: snapshots.KindActive, Name: "active", Parent: "committed", Labels: map[string]string{"k": "v"}},
		"view":      {Kind: snapshots.KindView, Name: "view", Parent: "committed", Labels: map[string]string{"k": "v"}},
	}
	for key, w := range want {
		got, err := e.sn.Stat(ctx, key)
		if err != nil {
			t.Fatalf("stat %q: %v", key, err)
		}
		if got.Created.IsZero() || !got.Created.Equal(got.Updated) {
			t.Errorf("%q: created %v, updated %v: want set and equal", key, got.Created, got.Updated)
		}
		got.Created, got.Updated = w.Created, w.Updated
		if !reflect.DeepEqual(got, w) {
			t.Errorf("stat %q = %+v, want %+v", key, got, w)
		}
	}
	_, err := e.sn.Stat(ctx, "nothing")
	wantErr(t, "stat of an unknown key", err, errdefs.ErrNotFound)
}

// testMounts checks that Mounts repeats what Prepare and View returned and
// refuses keys without mounts.
func testMounts(ctx context.Context, t *testing.T, e *env) {
	e.commit(ctx, t, "base", "", WriteFile("/f", "f", 0o644))
	e.commit(ctx, t, "second", "base", WriteFile("/g", "g", 0o644))
	created := map[string]func() ([]mount.Mount, error){
		"root-active": func() ([]mount.Mount, error) { return e.sn.Prepare(ctx, "root-active", "") },
		"active":      func() ([]mount.Mount, error) { return e.sn.Prepare(ctx, "active", "second") },
		"root-view":   func() ([]mount.Mount, error) { return e.sn.View(ctx, "root-view", "") },
		"view1":       func() ([]mount.Mount, error) { return e.sn.View(ctx, "view1", "base") },
		"view2":       func() ([]mount.Mount, error) { return e.sn.View(ctx, "view2", "second") },
	}
	for key, create := range created {
		first, err := create()
		if err != nil {
			t.Fatalf("create %q: %v", key, err)
		}
		again, err := e.sn.Mounts(ctx, key)
		if err != nil {
			t.Fatalf("mounts of %q: %v", key, err)
		}
		if !reflect.DeepEqual(first, again) {
			t.Errorf("mounts of %q = %v, want %v as returned at creation", key, again, first)
		}
	}
	_, err := e.sn.Mounts(ctx, "base")
	wantErr(t, "mounts of a committed snapshot", err, errdefs.ErrFailedPrecondition)
	_, err = e.sn.Mounts(ctx, "nothing")
	wantErr(t, "mounts of an unknown key", err, errdefs.ErrNotFound)
}

// testKeyConflicts checks that keys and names share one space.
func testKeyConflicts(ctx context.Context, t *testing.T, e *env) {
	e.commit(ctx, t, "base", "")
	if _, err := e.sn.Prepare(ctx, "active", "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"base", "active", "view"} {
		_, err := e.sn.Prepare(ctx, key, "")
		wantErr(t, "prepare of taken key "+key, err, errdefs.ErrAlreadyExists)
		_, err = e.sn.View(ctx, key, "base")
		wantErr(t, "view of taken key "+key, err, errdefs.ErrAlreadyExists)
	}
	if _, err := e.sn.Prepare(ctx, "active2", ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "commit to a taken name", e.sn.Commit(ctx, "base", "active2"), errdefs.ErrAlreadyExists)
	if info, err := e.sn.Stat(ctx, "active2"); err != nil || info.Kind != snapshots.KindActive {
		t.Errorf("active snapshot after a refused commit: %+v, %v", info, err)
	}
}

// testBadParents checks that only committed snapshots can be parents.
func testBadParents(ctx context.Context, t *testing.T, e *env) {
	_, err := e.sn.Prepare(ctx, "a", "missing")
	wantErr(t, "prepare on an unknown parent", err, errdefs.ErrNotFound)
	_, err = e.sn.View(ctx, "v", "missing")
	wantErr(t, "view of an unknown parent", err, errdefs.ErrNotFound)
	if _, err := e.sn.Prepare(ctx, "active", ""); err != nil {
		t.Fatal(err)
	}
	e.commit(ctx, t, "base", "")
	if _, err := e.sn.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}
	for _, parent := range []string{"active", "view"} {
		_, err := e.sn.Prepare(ctx, "child-of-"+parent, parent)
		wantErr(t, "prepare on "+parent, err, errdefs.ErrInvalidArgument)
		_, err = e.sn.View(ctx, "view-of-"+parent, parent)
		wantErr(t, "view of "+parent, err, errdefs.ErrInvalidArgument)
	}
	// A refused creation leaves nothing behind.
	for _, key := range []string{"a", "v", "child-of-active", "view-of-view"} {
		if _, err := e.sn.Stat(ctx, key); !errdefs.IsNotFound(err) {
			t.Errorf("stat %q after a refused creation: %v", key, err)
		}
	}
}

// testCommitRules checks that only active snapshots commit.
func testCommitRules(ctx context.Context, t *testing.T, e *env) {
	e.commit(ctx, t, "base", "", WriteFile("/f", "f", 0o644))
	if _, err := e.sn.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "commit of a view", e.sn.Commit(ctx, "from-view", "view"), errdefs.ErrFailedPrecondition)
	wantErr(t, "commit of a committed snapshot", e.sn.Commit(ctx, "again", "base"), errdefs.ErrFailedPrecondition)
	wantErr(t, "commit of an unknown key", e.sn.Commit(ctx, "x", "nothing"), errdefs.ErrNotFound)
	for _, name := range []string{"from-view", "again", "x"} {
		if _, err := e.sn.Stat(ctx, name); !errdefs.IsNotFound(err) {
			t.Errorf("stat %q after a refused commit: %v", name, err)
		}
	}
	if info, err := e.sn.Stat(ctx, "view"); err != nil || info.Kind != snapshots.KindView {
		t.Errorf("view after a refused commit: %+v, %v", info, err)
	}
}

// testRemove checks removal of each kind and the refusals.
func testRemove(ctx context.Context, t *testing.T, e *env) {
	wantErr(t, "remove of an unknown key", e.sn.Remove(ctx, "nothing"), errdefs.ErrNotFound)
	e.commit(ctx, t, "base", "", WriteFile("/f", "f", 0o644))
	e.commit(ctx, t, "mid", "base", WriteFile("/g", "g", 0o644))
	e.prepare(ctx, t, "active", "mid", WriteFile("/h", "h", 0o644))
	if _, err := e.sn.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "remove of a parent with an active child", e.sn.Remove(ctx, "mid"), errdefs.ErrFailedPrecondition)
	wantErr(t, "remove of a grandparent", e.sn.Remove(ctx, "base"), errdefs.ErrFailedPrecondition)
	for _, key := range []string{"active", "mid"} {
		if err := e.sn.Remove(ctx, key); err != nil {
			t.Fatalf("remove %q: %v", key, err)
		}
	}
	wantErr(t, "remove of a parent with a view", e.sn.Remove(ctx, "base"), errdefs.ErrFailedPrecondition)
	for _, key := range []string{"view", "base"} {
		if err := e.sn.Remove(ctx, key); err != nil {
			t.Fatalf("remove %q: %v", key, err)
		}
	}
	for _, key := range []string{"active", "mid", "view", "base"} {
		if _, err := e.sn.Stat(ctx, key); !errdefs.IsNotFound(err) {
			t.Errorf("stat %q after removal: %v", key, err)
		}
	}
	wantErr(t, "second remove", e.sn.Remove(ctx, "base"), errdefs.ErrNotFound)
	if c, ok := e.sn.(snapshots.Cleaner); ok {
		if err := c.Cleanup(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	// A removed name can be used again.
	e.commit(ctx, t, "base", "", WriteFile("/new", "n", 0o644))
	e.checkView(ctx, t, "base", WriteFile("/new", "n", 0o644))
}
