package volumes_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/volumes"
	"github.com/berthd/berth/core/volumes/local"
)

// env is a store over a real metadata database and the local driver.
type env struct {
	dir   string
	db    *metadata.DB
	store *volumes.Store
	ctx   context.Context
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), ctx: namespaces.WithNamespace(context.Background(), "test")}
	e.open(t)
	t.Cleanup(func() { e.db.Close() })
	return e
}

// open (re)opens the database and driver, as a berthd start does.
func (e *env) open(t *testing.T) {
	t.Helper()
	db, err := metadata.Open(filepath.Join(e.dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := local.New(filepath.Join(e.dir, "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	e.db = db
	e.store = volumes.NewStore(db, map[string]volumes.Driver{"local": d})
}

func (e *env) restart(t *testing.T) {
	t.Helper()
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	e.open(t)
}

func (e *env) create(t *testing.T, spec volumes.Spec) volumes.Volume {
	t.Helper()
	v, err := e.store.Create(e.ctx, spec)
	if err != nil {
		t.Fatalf("create %+v: %v", spec, err)
	}
	return v
}

func names(vols []volumes.Volume) []string {
	var out []string
	for _, v := range vols {
		out = append(out, v.Name)
	}
	return out
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"ab", "a1", "0x", "my-vol_1.2", "A.B-C_D"} {
		if err := volumes.ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q): %v", ok, err)
		}
	}
	long := fmt.Sprintf("%0256d", 0)
	for name, want := range map[string]string{
		"":        `volume name "" is invalid: it is empty: invalid argument`,
		"a":       `volume name "a" is invalid: it is shorter than two characters: invalid argument`,
		"..":      `volume name ".." is invalid: it starts with '.' instead of a letter or digit: invalid argument`,
		".hidden": `volume name ".hidden" is invalid: it starts with '.' instead of a letter or digit: invalid argument`,
		"-x":      `volume name "-x" is invalid: it starts with '-' instead of a letter or digit: invalid argument`,
		"a/b":     `volume name "a/b" is invalid: it contains '/' (a host directory to bind must be an absolute path): invalid argument`,
		"../etc":  `volume name "../etc" is invalid: it contains '/' (a host directory to bind must be an absolute path): invalid argument`,
		"ab\x00":  `volume name "ab\x00" is invalid: it contains a NUL byte: invalid argument`,
		"a:b":     `volume name "a:b" is invalid: it contains ':'; only [a-zA-Z0-9_.-] are allowed: invalid argument`,
		"éa":      `volume name "éa" is invalid: it starts with 'é' instead of a letter or digit: invalid argument`,
		"vé":      `volume name "vé" is invalid: it contains 'é'; only [a-zA-Z0-9_.-] are allowed: invalid argument`,
		long:      `volume name "00000000000000000000000000000000..." is invalid: it is 256 bytes, more than 255: invalid argument`,
	} {
		err := volumes.ValidateName(name)
		if err == nil || err.Error() != want {
			t.Errorf("ValidateName(%q)\n got: %v\nwant: %s", name, err, want)
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ValidateName(%q): not InvalidArgument", name)
		}
	}
	if n := volumes.NewName(); !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(n) || volumes.ValidateName(n) != nil {
		t.Errorf("NewName() = %q", n)
	}
}

func TestCreateGetList(t *testing.T) {
	e := newEnv(t)
	v := e.create(t, volumes.Spec{Name: "data", Labels: map[string]string{"app": "web"}})
	if v.Driver != "local" || v.Namespace != "test" || v.CreatedAt.IsZero() || v.Anonymous {
		t.Errorf("created %+v", v)
	}
	if want := filepath.Join(e.dir, "volumes", "test", "data", "_data"); v.Mountpoint != want {
		t.Errorf("mountpoint %s, want %s", v.Mountpoint, want)
	}
	if st, err := os.Stat(v.Mountpoint); err != nil || st.Mode().Perm() != 0o755 || !st.IsDir() {
		t.Errorf("data directory: %v %v", st, err)
	}
	got, err := e.store.Get(e.ctx, "data")
	if err != nil || got.Name != "data" || got.Labels["app"] != "web" || !got.CreatedAt.Equal(v.CreatedAt) {
		t.Errorf("Get = %+v, %v", got, err)
	}
	random := e.create(t, volumes.Spec{})
	if len(random.Name) != 64 || random.Anonymous {
		t.Errorf("unnamed volume %+v", random)
	}
	all, err := e.store.List(e.ctx, volumes.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"data", random.Name}
	slices.Sort(want)
	if !slices.Equal(names(all), want) {
		t.Errorf("List = %v, want %v", names(all), want)
	}
	// Another namespace sees none of them and may reuse the name.
	other := namespaces.WithNamespace(context.Background(), "other")
	if vols, _ := e.store.List(other, volumes.Filter{}); len(vols) != 0 {
		t.Errorf("namespace other lists %v", names(vols))
	}
	if _, err := e.store.Get(other, "data"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get in another namespace: %v", err)
	}
	if o, err := e.store.Create(other, volumes.Spec{Name: "data"}); err != nil || o.Mountpoint == v.Mountpoint {
		t.Errorf("same name in another namespace: %+v, %v", o, err)
	}
	if _, err := e.store.List(context.Background(), volumes.Filter{}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("List without a namespace: %v", err)
	}
}

func TestCreateErrorsLeaveNothing(t *testing.T) {
	e := newEnv(t)
	e.create(t, volumes.Spec{Name: "taken"})
	missing := filepath.Join(e.dir, "missing")
	for name, c := range map[string]struct {
		spec volumes.Spec
		want string
		kind error
	}{
		"duplicate":      {volumes.Spec{Name: "taken"}, `volume "taken": already exists`, errdefs.ErrAlreadyExists},
		"bad name":       {volumes.Spec{Name: "../x"}, `volume name "../x" is invalid: it contains '/' (a host directory to bind must be an absolute path): invalid argument`, errdefs.ErrInvalidArgument},
		"unknown driver": {volumes.Spec{Name: "v1", Driver: "nfs"}, `volume driver "nfs" is not available (available: local): not found`, errdefs.ErrNotFound},
		"bad label":      {volumes.Spec{Name: "v2", Labels: map[string]string{"": "x"}}, `volume "v2": label key must not be empty: invalid argument`, errdefs.ErrInvalidArgument},
		"unknown option": {volumes.Spec{Name: "v3", Options: map[string]string{"size": "1g"}}, `create volume "v3": volume option "size" is not known to the local driver (type, device, o): invalid argument`, errdefs.ErrInvalidArgument},
		"device without type": {volumes.Spec{Name: "v4", Options: map[string]string{"device": "/tmp"}},
			`create volume "v4": volume options: device and o need a type (type=tmpfs, or type=none with o=bind): invalid argument`, errdefs.ErrInvalidArgument},
		"type without device": {volumes.Spec{Name: "v5", Options: map[string]string{"type": "tmpfs"}},
			`create volume "v5": volume options: type=tmpfs needs a device: invalid argument`, errdefs.ErrInvalidArgument},
		"bad tmpfs size": {volumes.Spec{Name: "v6", Options: map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=lots"}},
			`create volume "v6": tmpfs option "size=lots": size must be positive, such as 64m: invalid argument`, errdefs.ErrInvalidArgument},
		"bind of a missing path": {volumes.Spec{Name: "v7", Options: map[string]string{"type": "none", "o": "bind", "device": missing}},
			`create volume "v7": volume option device: bind source path does not exist: ` + missing + `: invalid argument`, errdefs.ErrInvalidArgument},
		"bind without o=bind": {volumes.Spec{Name: "v8", Options: map[string]string{"type": "none", "device": e.dir}},
			`create volume "v8": volume options: type=none needs o=bind (or rbind): invalid argument`, errdefs.ErrInvalidArgument},
		"bind of a file": {volumes.Spec{Name: "v9", Options: map[string]string{"type": "none", "o": "bind", "device": filepath.Join(e.dir, "meta.db")}},
			`create volume "v9": volume options: device ` + filepath.Join(e.dir, "meta.db") + ` is not a directory: invalid argument`, errdefs.ErrInvalidArgument},
	} {
		_, err := e.store.Create(e.ctx, c.spec)
		if err == nil || err.Error() != c.want || !errors.Is(err, c.kind) {
			t.Errorf("%s:\n got: %v\nwant: %s", name, err, c.want)
		}
	}
	all, _ := e.store.List(e.ctx, volumes.Filter{})
	if !slices.Equal(names(all), []string{"taken"}) {
		t.Errorf("failed creates left volumes: %v", names(all))
	}
	entries, _ := os.ReadDir(filepath.Join(e.dir, "volumes", "test"))
	if len(entries) != 1 || entries[0].Name() != "taken" {
		t.Errorf("failed creates left directories: %v", entries)
	}
}

func TestFilters(t *testing.T) {
	e := newEnv(t)
	e.create(t, volumes.Spec{Name: "web-data", Labels: map[string]string{"app": "web", "tier": "front"}})
	e.create(t, volumes.Spec{Name: "db-data", Labels: map[string]string{"app": "db"}})
	e.create(t, volumes.Spec{Name: "scratch"})
	if _, err := e.store.Acquire(e.ctx, "c1", volumes.Spec{Name: "db-data"}); err != nil {
		t.Fatal(err)
	}
	for filters, want := range map[string][]string{
		"":                           {"db-data", "scratch", "web-data"},
		"dangling=true":              {"scratch", "web-data"},
		"dangling=false":             {"db-data"},
		"dangling=1,dangling=0":      {"db-data", "scratch", "web-data"},
		"name=data":                  {"db-data", "web-data"},
		"name=web,name=scr":          {"scratch", "web-data"},
		"label=app":                  {"db-data", "web-data"},
		"label=app=web":              {"web-data"},
		"label=app,label=tier=front": {"web-data"},
		"label=app=db,dangling=true": nil,
		"driver=local,name=scratch":  {"scratch"},
		"driver=other":               nil,
	} {
		var args []string
		if filters != "" {
			args = regexp.MustCompile(`,`).Split(filters, -1)
		}
		f, err := volumes.ParseFilters(args)
		if err != nil {
			t.Errorf("ParseFilters(%q): %v", filters, err)
			continue
		}
		got, err := e.store.List(e.ctx, f)
		if err != nil || !slices.Equal(names(got), want) {
			t.Errorf("List(%q) = %v, %v; want %v", filters, names(got), err, want)
		}
	}
	for arg, want := range map[string]string{
		"dangling":       `filter "dangling" is not key=value: invalid argument`,
		"=x":             `filter "=x" is not key=value: invalid argument`,
		"dangling=maybe": `filter "dangling=maybe": dangling takes true or false: invalid argument`,
		"label=":         `filter "label=": label needs a key: invalid argument`,
		"size=1":         `filter "size=1": unknown key "size" (dangling, driver, label, name): invalid argument`,
	} {
		if _, err := volumes.ParseFilters([]string{arg}); err == nil || err.Error() != want {
			t.Errorf("ParseFilters(%q)\n got: %v\nwant: %s", arg, err, want)
		}
	}
}

func TestAcquireRelease(t *testing.T) {
	e := newEnv(t)
	// A named volume is created on first use.
	v, err := e.store.Acquire(e.ctx, "c1", volumes.Spec{Name: "cache"})
	if err != nil || !slices.Equal(v.Users, []string{"c1"}) || v.Anonymous {
		t.Fatalf("Acquire = %+v, %v", v, err)
	}
	if v, err = e.store.Acquire(e.ctx, "c0", volumes.Spec{Name: "cache", Driver: "local"}); err != nil || !slices.Equal(v.Users, []string{"c0", "c1"}) {
		t.Fatalf("second Acquire = %+v, %v", v, err)
	}
	if v, err = e.store.Acquire(e.ctx, "c1", volumes.Spec{Name: "cache"}); err != nil || len(v.Users) != 2 {
		t.Errorf("repeated Acquire = %+v, %v", v, err)
	}
	if _, err := e.store.Acquire(e.ctx, "c2", volumes.Spec{Name: "cache", Driver: "other"}); err == nil || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Acquire with another driver: %v", err)
	}
	if _, err := e.store.Acquire(e.ctx, "bad id!", volumes.Spec{Name: "cache"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Acquire with a bad container id: %v", err)
	}
	// An empty name makes an anonymous volume.
	anon, err := e.store.Acquire(e.ctx, "c1", volumes.Spec{})
	if err != nil || !anon.Anonymous || len(anon.Name) != 64 || !slices.Equal(anon.Users, []string{"c1"}) {
		t.Fatalf("anonymous Acquire = %+v, %v", anon, err)
	}
	shared, err := e.store.Acquire(e.ctx, "c2", volumes.Spec{Name: anon.Name}) // --volumes-from
	if err != nil || !shared.Anonymous {
		t.Fatal(shared, err)
	}

	// c1 goes: its anonymous volume stays while c2 uses it.
	if err := e.store.ReleaseAll(e.ctx, "c1", true); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.store.Get(e.ctx, "cache"); !slices.Equal(v.Users, []string{"c0"}) {
		t.Errorf("cache users after c1 left: %v", v.Users)
	}
	if v, err := e.store.Get(e.ctx, anon.Name); err != nil || !slices.Equal(v.Users, []string{"c2"}) {
		t.Errorf("anonymous volume after c1 left: %+v, %v", v, err)
	}
	// c2 goes too, keeping its volumes: the anonymous one stays, unused.
	if err := e.store.Release(e.ctx, anon.Name, "c2", false); err != nil {
		t.Fatal(err)
	}
	if v, err := e.store.Get(e.ctx, anon.Name); err != nil || len(v.Users) != 0 {
		t.Errorf("anonymous volume kept: %+v, %v", v, err)
	}
	// A new user then leaving with removal takes it away.
	e.store.Acquire(e.ctx, "c3", volumes.Spec{Name: anon.Name})
	if err := e.store.ReleaseAll(e.ctx, "c3", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Get(e.ctx, anon.Name); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("anonymous volume after its last user left: %v", err)
	}
	if _, err := os.Stat(anon.Mountpoint); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("anonymous volume data left: %v", err)
	}
	// Named volumes are never removed by release.
	if err := e.store.ReleaseAll(e.ctx, "c0", true); err != nil {
		t.Fatal(err)
	}
	if v, err := e.store.Get(e.ctx, "cache"); err != nil || len(v.Users) != 0 {
		t.Errorf("named volume after release: %+v, %v", v, err)
	}
	if err := e.store.Release(e.ctx, "gone", "c0", true); err != nil {
		t.Errorf("releasing a missing volume: %v", err)
	}
}

func TestAcquireConcurrent(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.store.Acquire(e.ctx, fmt.Sprintf("c%02d", i), volumes.Spec{Name: "shared"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	v, err := e.store.Get(e.ctx, "shared")
	if err != nil || len(v.Users) != 20 {
		t.Errorf("after 20 concurrent first uses: %d users, %v", len(v.Users), err)
	}
}

func TestRemove(t *testing.T) {
	e := newEnv(t)
	v := e.create(t, volumes.Spec{Name: "data"})
	if err := os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.store.Acquire(e.ctx, "c1", volumes.Spec{Name: "data"})
	e.store.Acquire(e.ctx, "c2", volumes.Spec{Name: "data"})

	err := e.store.Remove(e.ctx, "data", false)
	if want := `volume "data" is in use by container(s) c1, c2: failed precondition`; err == nil || err.Error() != want {
		t.Errorf("Remove in use:\n got: %v\nwant: %s", err, want)
	}
	// Without a RunningFunc, a container that has the volume mounted runs.
	if _, err := e.store.Mount(e.ctx, "data", "c2"); err != nil {
		t.Fatal(err)
	}
	err = e.store.Remove(e.ctx, "data", true)
	if want := `volume "data" is in use by running container(s) c2; stop them first: failed precondition`; err == nil || err.Error() != want {
		t.Errorf("forced Remove with a mounted user:\n got: %v\nwant: %s", err, want)
	}
	// The runtime's answer wins once it is given.
	running := map[string]bool{"c1": true}
	e.store.SetRunningFunc(func(ctx context.Context, id string) (bool, error) {
		if ns, _ := namespaces.Namespace(ctx); ns != "test" {
			return false, fmt.Errorf("asked in namespace %q", ns)
		}
		return running[id], nil
	})
	err = e.store.Remove(e.ctx, "data", true)
	if want := `volume "data" is in use by running container(s) c1; stop them first: failed precondition`; err == nil || err.Error() != want {
		t.Errorf("forced Remove with a running user:\n got: %v\nwant: %s", err, want)
	}
	if _, err := os.Stat(filepath.Join(v.Mountpoint, "f")); err != nil {
		t.Errorf("refused removal touched the data: %v", err)
	}
	e.store.SetRunningFunc(func(context.Context, string) (bool, error) { return false, errors.New("runtime down") })
	if err := e.store.Remove(e.ctx, "data", true); err == nil || !regexp.MustCompile(`cannot tell whether its users run: container c1: runtime down`).MatchString(err.Error()) {
		t.Errorf("forced Remove when the runtime cannot answer: %v", err)
	}
	running["c1"] = false
	e.store.SetRunningFunc(func(ctx context.Context, id string) (bool, error) { return running[id], nil })
	if err := e.store.Remove(e.ctx, "data", true); err != nil {
		t.Fatalf("forced Remove of stopped users: %v", err)
	}
	if _, err := e.store.Get(e.ctx, "data"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(v.Mountpoint)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data left after Remove: %v", err)
	}
	if err := e.store.Remove(e.ctx, "data", false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	if err := e.store.Unmount(e.ctx, "data", "c2"); err != nil {
		t.Errorf("Unmount of a removed volume: %v", err)
	}
}

func TestPrune(t *testing.T) {
	e := newEnv(t)
	named := e.create(t, volumes.Spec{Name: "named"})
	os.WriteFile(filepath.Join(named.Mountpoint, "f"), make([]byte, 10000), 0o644)
	e.create(t, volumes.Spec{Name: "kept", Labels: map[string]string{"keep": "1"}})
	anon, _ := e.store.Acquire(e.ctx, "c1", volumes.Spec{})
	e.store.Release(e.ctx, anon.Name, "c1", false)
	os.WriteFile(filepath.Join(anon.Mountpoint, "f"), make([]byte, 5000), 0o644)
	used, _ := e.store.Acquire(e.ctx, "c2", volumes.Spec{})

	removed, reclaimed, err := e.store.Prune(e.ctx, false, volumes.Filter{})
	if err != nil || !slices.Equal(removed, []string{anon.Name}) || reclaimed < 5000 {
		t.Errorf("Prune = %v, %d, %v; want only the unused anonymous volume", removed, reclaimed, err)
	}
	f, _ := volumes.ParseFilters([]string{"name=named"})
	removed, reclaimed, err = e.store.Prune(e.ctx, true, f)
	if err != nil || !slices.Equal(removed, []string{"named"}) || reclaimed < 10000 {
		t.Errorf("Prune all name=named = %v, %d, %v", removed, reclaimed, err)
	}
	removed, _, err = e.store.Prune(e.ctx, true, volumes.Filter{})
	if err != nil || !slices.Equal(removed, []string{"kept"}) {
		t.Errorf("Prune all = %v, %v", removed, err)
	}
	left, _ := e.store.List(e.ctx, volumes.Filter{})
	if !slices.Equal(names(left), []string{used.Name}) {
		t.Errorf("after pruning: %v, want only the used volume", names(left))
	}
}

func TestSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	v := e.create(t, volumes.Spec{Name: "persist", Labels: map[string]string{"a": "b"}})
	os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("kept"), 0o600)
	e.store.Acquire(e.ctx, "c1", volumes.Spec{Name: "persist"})
	anon, _ := e.store.Acquire(e.ctx, "c1", volumes.Spec{})
	e.restart(t)

	got, err := e.store.Get(e.ctx, "persist")
	if err != nil || got.Labels["a"] != "b" || !slices.Equal(got.Users, []string{"c1"}) || got.Mountpoint != v.Mountpoint {
		t.Errorf("after restart: %+v, %v", got, err)
	}
	if b, err := os.ReadFile(filepath.Join(got.Mountpoint, "f")); err != nil || string(b) != "kept" {
		t.Errorf("data after restart: %q, %v", b, err)
	}
	if a, err := e.store.Get(e.ctx, anon.Name); err != nil || !a.Anonymous {
		t.Errorf("anonymous volume after restart: %+v, %v", a, err)
	}
	if err := e.store.Remove(e.ctx, "persist", false); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("usage forgotten across restart: %v", err)
	}
}

func TestCrashLeftovers(t *testing.T) {
	e := newEnv(t)
	v := e.create(t, volumes.Spec{Name: "lost"})
	// A crash in the middle of a removal leaves the data moved aside: the
	// next start deletes it.
	trash := filepath.Join(e.dir, "volumes", "test", ".trash-gone-12345678")
	os.MkdirAll(filepath.Join(trash, "_data", "deep"), 0o755)
	// A crash between moving the data aside and deleting the record
	// leaves a record without data: mounting recreates it empty.
	os.RemoveAll(filepath.Dir(v.Mountpoint))
	e.restart(t)
	if _, err := os.Stat(trash); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("trash left after restart: %v", err)
	}
	path, err := e.store.Mount(e.ctx, "lost", "c1")
	if err != nil || path != v.Mountpoint {
		t.Fatalf("Mount = %s, %v", path, err)
	}
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		t.Errorf("data directory not recreated: %v", err)
	}
	if err := e.store.Unmount(e.ctx, "lost", "c1"); err != nil {
		t.Error(err)
	}
	if err := e.store.ReleaseAll(e.ctx, "c1", true); err != nil {
		t.Error(err)
	}
	if err := e.store.Remove(e.ctx, "lost", false); err != nil {
		t.Error(err)
	}
}

func TestDiskUsage(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, volumes.Spec{Name: "big"})
	os.WriteFile(filepath.Join(a.Mountpoint, "f"), make([]byte, 1<<20), 0o644)
	b := e.create(t, volumes.Spec{Name: "small"})
	os.WriteFile(filepath.Join(b.Mountpoint, "f"), make([]byte, 8192), 0o644)
	e.store.Acquire(e.ctx, "c1", volumes.Spec{Name: "big"})
	other := namespaces.WithNamespace(context.Background(), "other")
	e.store.Create(other, volumes.Spec{Name: "elsewhere"})

	sums, items, err := e.store.DiskUsage(context.Background(), "test", true)
	if err != nil || len(sums) != 1 {
		t.Fatal(sums, err)
	}
	s := sums[0]
	if s.Type != volumes.UsageType || s.Total != 2 || s.Active != 1 || s.Size < (1<<20)+8192 || s.Reclaimable < 8192 || s.Reclaimable >= 1<<20 {
		t.Errorf("summary %+v", s)
	}
	if len(items) != 2 || items[0].Name != "big" || items[0].Users != 1 || items[0].Size < 1<<20 || items[1].Namespace != "test" {
		t.Errorf("items %+v", items)
	}
	sums, items, err = e.store.DiskUsage(context.Background(), "", false)
	if err != nil || sums[0].Total != 3 || items != nil {
		t.Errorf("all namespaces: %+v %+v %v", sums, items, err)
	}
}
