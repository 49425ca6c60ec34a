package testsuite

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"testing"

	"github.com/berthd/berth/core/snapshots"
	"github.com/containerd/errdefs"
)

// walkAll collects what Walk reports, by name.
func (e *env) walkAll(ctx context.Context, t *testing.T, filters ...string) map[string]snapshots.Info {
	t.Helper()
	got := map[string]snapshots.Info{}
	err := e.sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if _, dup := got[info.Name]; dup {
			t.Errorf("walk reported %q twice", info.Name)
		}
		got[info.Name] = info
		return nil
	}, filters...)
	if err != nil {
		t.Fatalf("walk %q: %v", filters, err)
	}
	return got
}

func names(infos map[string]snapshots.Info) []string {
	var out []string
	for name := range infos {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// testWalk checks Walk reports every snapshot as Stat does, applies
// filters, and stops at the first error of its callback.
func testWalk(ctx context.Context, t *testing.T, e *env) {
	e.commit(ctx, t, "base", "")
	if _, err := e.sn.Update(ctx, snapshots.Info{Name: "base", Labels: map[string]string{"x": "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn.Prepare(ctx, "child-active", "base", snapshots.WithLabels(map[string]string{"x": "2"})); err != nil {
		t.Fatal(err)
	}
	if err := e.sn.Commit(ctx, "child", "child-active", snapshots.WithLabels(map[string]string{"x": "2", "y.z": "3"})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn.Prepare(ctx, "active", "child", snapshots.WithLabels(map[string]string{"x": "1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}

	all := e.walkAll(ctx, t)
	if got := names(all); !reflect.DeepEqual(got, []string{"active", "base", "child", "view"}) {
		t.Fatalf("walk reported %q", got)
	}
	for name, info := range all {
		// Stat from inside a walk callback must not deadlock.
		stat, err := e.sn.Stat(ctx, name)
		if err != nil || !reflect.DeepEqual(stat, info) {
			t.Errorf("walk reported %+v, stat says %+v, %v", info, stat, err)
		}
	}

	for _, c := range []struct {
		filters []string
		want    []string
	}{
		{[]string{"labels.x==1"}, []string{"active", "base"}},
		{[]string{`labels."y.z"==3`}, []string{"child"}},
		{[]string{"kind==committed"}, []string{"base", "child"}},
		{[]string{"kind==view", "kind==active"}, []string{"active", "view"}},
		{[]string{"parent==base"}, []string{"child", "view"}},
		{[]string{"name~=^ch", "labels.x==1"}, []string{"active", "base", "child"}},
		{[]string{"kind==committed,labels.x==2"}, []string{"child"}},
		{[]string{"labels.x"}, []string{"active", "base", "child"}},
	} {
		if got := names(e.walkAll(ctx, t, c.filters...)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("walk with filters %q reported %q, want %q", c.filters, got, c.want)
		}
	}

	err := e.sn.Walk(ctx, func(context.Context, snapshots.Info) error { return nil }, "labels.x==")
	wantErr(t, "walk with a malformed filter", err, errdefs.ErrInvalidArgument)
	stop := errors.New("stop")
	calls := 0
	err = e.sn.Walk(ctx, func(context.Context, snapshots.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("walk whose callback fails: %v after %d calls, want the callback's error after 1", err, calls)
	}
}

// testReopen checks that a snapshotter opened again on the same root
// keeps every snapshot, its contents and its usage.
func testReopen(ctx context.Context, t *testing.T, e *env) {
	e.commit(ctx, t, "base", "", WriteFile("/f", "f", 0o644))
	e.commit(ctx, t, "child", "base", WriteFile("/g", "g", 0o644))
	e.prepare(ctx, t, "active", "child", WriteFile("/h", "h", 0o644))
	if _, err := e.sn.View(ctx, "view", "child"); err != nil {
		t.Fatal(err)
	}
	e.commit(ctx, t, "removed", "child", WriteFile("/r", "r", 0o644))
	if err := e.sn.Remove(ctx, "removed"); err != nil {
		t.Fatal(err)
	}
	before := e.walkAll(ctx, t)
	usage, err := e.sn.Usage(ctx, "child")
	if err != nil {
		t.Fatal(err)
	}

	e.reopen(ctx, t)

	if after := e.walkAll(ctx, t); !reflect.DeepEqual(after, before) {
		t.Errorf("after reopen walk reports %+v, want %+v", after, before)
	}
	if got, err := e.sn.Usage(ctx, "child"); err != nil || got != usage {
		t.Errorf("usage after reopen %+v, %v; want %+v", got, err, usage)
	}
	layers := []Change{WriteFile("/f", "f", 0o644), WriteFile("/g", "g", 0o644)}
	e.checkMounted(ctx, t, "view", layers...)
	e.checkMounted(ctx, t, "active", append(layers, WriteFile("/h", "h", 0o644))...)
	if err := e.sn.Commit(ctx, "later", "active"); err != nil {
		t.Fatalf("commit after reopen: %v", err)
	}
	e.checkView(ctx, t, "later", append(layers, WriteFile("/h", "h", 0o644))...)
	// New snapshots get fresh layers, not a removed one's.
	e.commit(ctx, t, "fresh", "child")
	e.checkView(ctx, t, "fresh", layers...)
}

// testCloseTwice checks Close may be called again.
func testCloseTwice(ctx context.Context, t *testing.T, e *env) {
	e.commit(ctx, t, "base", "")
	for i := range 2 {
		if err := e.close(); err != nil {
			t.Fatalf("close %d: %v", i+1, err)
		}
	}
	e.open(ctx, t)
	if _, err := e.sn.Stat(ctx, "base"); err != nil {
		t.Fatalf("stat after close and open: %v", err)
	}
}
