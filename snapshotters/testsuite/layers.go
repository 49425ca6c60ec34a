package testsuite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berthd/berth/core/snapshots"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// testConcurrentPrepare races prepares of one key: exactly one wins and
// every other gets ErrAlreadyExists. Prepares of distinct keys all win.
func testConcurrentPrepare(ctx context.Context, t *testing.T, e *env) {
	e.commit(ctx, t, "base", "", WriteFile("/f", "f", 0o644))
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = e.sn.Prepare(ctx, "same", "base")
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, errdefs.ErrAlreadyExists):
			t.Errorf("losing prepare: got %v, want already exists", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent prepares of one key succeeded, want 1", wins, n)
	}
	for i := range n {
		wg.Go(func() {
			_, errs[i] = e.sn.Prepare(ctx, fmt.Sprintf("distinct-%d", i), "base")
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent prepares of distinct keys: %v", err)
	}
	// Each got its own layer: a write to one is not seen by another.
	e.prepareWrite(ctx, t, "distinct-0", WriteFile("/mine", "0", 0o644))
	e.checkMounted(ctx, t, "distinct-1", WriteFile("/f", "f", 0o644))
}

// prepareWrite applies changes through the mounts of an existing active
// snapshot.
func (e *env) prepareWrite(ctx context.Context, t *testing.T, key string, changes ...Change) {
	t.Helper()
	e.withKeyMounted(ctx, t, key, func(dir string) {
		if err := apply(dir, changes...); err != nil {
			t.Fatal(err)
		}
	})
}

// checkMounted compares the tree of an existing snapshot with changes.
func (e *env) checkMounted(ctx context.Context, t *testing.T, key string, changes ...Change) {
	t.Helper()
	e.withKeyMounted(ctx, t, key, func(dir string) {
		if err := checkTree(dir, e.work, changes...); err != nil {
			t.Errorf("%q: %v", key, err)
		}
	})
}

// withKeyMounted runs f with the existing snapshot key mounted at dir.
func (e *env) withKeyMounted(ctx context.Context, t *testing.T, key string, f func(dir string)) {
	t.Helper()
	mounts, err := e.sn.Mounts(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	e.withMounted(t, mounts, f)
}

// testUsage checks usage recorded at commit and measured for active
// snapshots.
func testUsage(ctx context.Context, t *testing.T, e *env) {
	const big = 1 << 20
	layer := []Change{
		WriteFile("/big", strings.Repeat("x", big), 0o644),
		Mkdir("/dir", 0o755),
		WriteFile("/dir/small", "s", 0o644),
		Link("/dir/small", "/dir/hardlink"),
		Symlink("small", "/dir/symlink"),
	}
	e.commit(ctx, t, "base", "", layer...)
	u, err := e.sn.Usage(ctx, "base")
	if err != nil {
		t.Fatal(err)
	}
	// The root, big, dir, small (twice linked, counted once), symlink.
	if u.Inodes != 5 {
		t.Errorf("committed usage counts %d inodes, want 5", u.Inodes)
	}
	if u.Size < big {
		t.Errorf("committed usage is %d bytes, want at least %d", u.Size, big)
	}

	if _, err := e.sn.Prepare(ctx, "active", "base"); err != nil {
		t.Fatal(err)
	}
	before, err := e.sn.Usage(ctx, "active")
	if err != nil {
		t.Fatal(err)
	}
	e.prepareWrite(ctx, t, "active", WriteFile("/more", strings.Repeat("y", big/2), 0o644))
	after, err := e.sn.Usage(ctx, "active")
	if err != nil {
		t.Fatal(err)
	}
	if after.Size-before.Size < big/2 || after.Inodes != before.Inodes+1 {
		t.Errorf("active usage went from %+v to %+v after writing one file of %d bytes", before, after, big/2)
	}
	if _, err := e.sn.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn.Usage(ctx, "view"); err != nil {
		t.Errorf("usage of a view: %v", err)
	}
	_, err = e.sn.Usage(ctx, "nothing")
	wantErr(t, "usage of an unknown key", err, errdefs.ErrNotFound)
}

// testUpdate checks label updates by field path.
func testUpdate(ctx context.Context, t *testing.T, e *env) {
	initial := map[string]string{"a": "1", "b": "2"}
	if _, err := e.sn.Prepare(ctx, "active", "", snapshots.WithLabels(initial)); err != nil {
		t.Fatal(err)
	}
	before, err := e.sn.Stat(ctx, "active")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		labels map[string]string
		paths  []string
		want   map[string]string
	}{
		{map[string]string{"c": "3", "a": "ignored"}, []string{"labels.c"}, map[string]string{"a": "1", "b": "2", "c": "3"}},
		{map[string]string{}, []string{"labels.a"}, map[string]string{"b": "2", "c": "3"}},
		{map[string]string{"x": "9"}, []string{"labels"}, map[string]string{"x": "9"}},
		{map[string]string{"y": "8", "z": "7"}, nil, map[string]string{"y": "8", "z": "7"}},
	}
	prev := before
	for i, s := range steps {
		info := snapshots.Info{Name: "active", Labels: s.labels, Parent: "ignored", Kind: snapshots.KindCommitted}
		got, err := e.sn.Update(ctx, info, s.paths...)
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if fmt.Sprint(got.Labels) != fmt.Sprint(s.want) {
			t.Errorf("update %d (paths %q): labels %v, want %v", i, s.paths, got.Labels, s.want)
		}
		if got.Kind != snapshots.KindActive || got.Parent != "" || !got.Created.Equal(before.Created) || got.Updated.Before(prev.Updated) {
			t.Errorf("update %d changed more than labels and the update time: %+v (before %+v)", i, got, prev)
		}
		if stat, err := e.sn.Stat(ctx, "active"); err != nil || fmt.Sprint(stat) != fmt.Sprint(got) {
			t.Errorf("stat after update %d = %+v, %v; want %+v", i, stat, err, got)
		}
		prev = got
	}
	for _, path := range []string{"parent", "name", "kind"} {
		_, err := e.sn.Update(ctx, snapshots.Info{Name: "active"}, path)
		wantErr(t, "update of field "+path, err, errdefs.ErrInvalidArgument)
	}
	_, err = e.sn.Update(ctx, snapshots.Info{Name: "nothing", Labels: initial})
	wantErr(t, "update of an unknown key", err, errdefs.ErrNotFound)
}

// testWhiteouts deletes and replaces lower files and directories in a
// child layer: after commit they are gone from the child while the parent
// still has them.
func testWhiteouts(ctx context.Context, t *testing.T, e *env) {
	base := []Change{
		WriteFile("/gone", "g", 0o644),
		Mkdir("/dir", 0o755),
		WriteFile("/dir/x", "x", 0o644),
		WriteFile("/dir/y", "y", 0o644),
		Mkdir("/opaque", 0o755),
		WriteFile("/opaque/old", "o", 0o644),
		WriteFile("/moved", "m", 0o644),
		WriteFile("/keep", "k", 0o644),
	}
	child := []Change{
		Remove("/gone"),
		Remove("/dir/x"),
		Remove("/opaque"),
		Mkdir("/opaque", 0o700),
		WriteFile("/opaque/new", "n", 0o644),
		Rename("/moved", "/renamed"),
	}
	e.commit(ctx, t, "base", "", base...)
	e.commit(ctx, t, "child", "base", child...)
	e.checkView(ctx, t, "child", concat(base, child)...)
	e.checkView(ctx, t, "base", base...)
	// A grandchild sees the child's deletions too, and may bring a
	// deleted name back.
	e.commit(ctx, t, "grandchild", "child", WriteFile("/gone", "back", 0o600))
	e.checkView(ctx, t, "grandchild", concat(base, child, []Change{WriteFile("/gone", "back", 0o600)})...)
}

// testMetadata checks that ownership, modes, special files, links and
// xattrs survive commit, and that a child can change them.
func testMetadata(ctx context.Context, t *testing.T, e *env) {
	base := []Change{
		WriteFile("/setuid", "s", 0o755),
		Chmod("/setuid", 0o4755),
		WriteFile("/private", "p", 0o600),
		Chown("/private", 1000, 1001),
		Mkdir("/sticky", 0o777),
		Chmod("/sticky", 0o1777),
		Mkdir("/owned", 0o700),
		Chown("/owned", 123, 456),
		Symlink("/nowhere/at/all", "/dangling"),
		Symlink("private", "/link"),
		Chown("/link", 7, 8),
		WriteFile("/hard", "h", 0o644),
		Link("/hard", "/hard2"),
		Mknod("/null", unix.S_IFCHR|0o666, 1, 3),
		Mknod("/fifo", unix.S_IFIFO|0o644, 0, 0),
		WriteFile("/xattr", "x", 0o644),
		Setxattr("/xattr", "user.berth", "value"),
	}
	e.commit(ctx, t, "base", "", base...)
	e.checkView(ctx, t, "base", base...)
	child := []Change{
		Chown("/setuid", 5, 5),
		Chmod("/setuid", 0o4750), // chown drops setuid; set it again
		Chmod("/private", 0o640),
		Setxattr("/xattr", "user.other", "2"),
		// Not a write to /hard: overlayfs copies one link of a hard-linked
		// lower file up on its own, which splits the pair.
	}
	e.commit(ctx, t, "child", "base", child...)
	e.checkView(ctx, t, "child", concat(base, child)...)
}

// testViewReadOnly checks that every shape of view refuses writes.
func testViewReadOnly(ctx context.Context, t *testing.T, e *env) {
	e.commit(ctx, t, "base", "", WriteFile("/f", "f", 0o644))
	e.commit(ctx, t, "second", "base", WriteFile("/g", "g", 0o644))
	for key, parent := range map[string]string{"empty": "", "one": "base", "two": "second"} {
		mounts, err := e.sn.View(ctx, key, parent)
		if err != nil {
			t.Fatal(err)
		}
		e.withMounted(t, mounts, func(dir string) {
			err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644)
			if !errors.Is(err, unix.EROFS) {
				t.Errorf("write into view of %q: got %v, want EROFS", parent, err)
			}
		})
	}
}

// testRootPermission checks the root of a new layer is root-owned 0755,
// and that a child inherits a changed root.
func testRootPermission(ctx context.Context, t *testing.T, e *env) {
	mounts, err := e.sn.Prepare(ctx, "active", "")
	if err != nil {
		t.Fatal(err)
	}
	e.withMounted(t, mounts, func(dir string) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o7777 != 0o755 || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("root of a new snapshot: mode %#o owner %d:%d, want 0755 0:0", st.Mode&0o7777, st.Uid, st.Gid)
		}
		if err := apply(dir, Chmod("/", 0o750), Chown("/", 10, 20)); err != nil {
			t.Fatal(err)
		}
	})
	if err := e.sn.Commit(ctx, "base", "active"); err != nil {
		t.Fatal(err)
	}
	e.commit(ctx, t, "child", "base", WriteFile("/f", "f", 0o644))
	e.checkView(ctx, t, "child", Chmod("/", 0o750), Chown("/", 10, 20), WriteFile("/f", "f", 0o644))
}

// testLayers128 builds a chain of 128 layers, each adding a file and
// overwriting a shared one, and reads every layer, the bottom one
// included, through a view and an active snapshot on top.
func testLayers128(ctx context.Context, t *testing.T, e *env) {
	const n = 128
	parent := ""
	var all []Change
	for i := range n {
		name := fmt.Sprintf("layer-%03d", i)
		layer := []Change{WriteFile("/"+name, name, 0o644), WriteFile("/top", name, 0o644)}
		if i == 0 {
			layer = append(layer, WriteFile("/bottom", "bottom", 0o644))
		}
		e.commit(ctx, t, name, parent, layer...)
		all = append(all, layer...)
		parent = name
	}
	e.checkView(ctx, t, parent, all...)
	mounts, err := e.sn.Prepare(ctx, "active", parent)
	if err != nil {
		t.Fatal(err)
	}
	e.withMounted(t, mounts, func(dir string) {
		if got, err := readFile(dir, "bottom"); err != nil || got != "bottom" {
			t.Errorf("bottom layer through active snapshot: %q, %v", got, err)
		}
		if err := apply(dir, WriteFile("/bottom", "rewritten", 0o644)); err != nil {
			t.Errorf("write over the bottom layer: %v", err)
		}
	})
	if err := e.sn.Commit(ctx, "top", "active"); err != nil {
		t.Fatal(err)
	}
	e.checkView(ctx, t, "top", append(all, WriteFile("/bottom", "rewritten", 0o644))...)
}
