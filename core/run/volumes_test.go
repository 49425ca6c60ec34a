package run

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/containers"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/mountspec"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/volumes"
	"github.com/berthd/berth/core/volumes/local"
	"github.com/berthd/berth/internal/testutil/require"
)

// volumeEnv is a manager over a real metadata database, volume store and
// local driver, without a runtime.
type volumeEnv struct {
	m     *Manager
	store *volumes.Store
	db    *metadata.DB
	ctx   context.Context
	dir   string
}

func newVolumeEnv(t *testing.T) *volumeEnv {
	t.Helper()
	dir := t.TempDir()
	db, err := metadata.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d, err := local.New(filepath.Join(dir, "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	store := volumes.NewStore(db, map[string]volumes.Driver{"local": d})
	m := New(ManagerOptions{Containers: db.Containers(), Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"), Volumes: store})
	t.Cleanup(func() { m.Close() })
	store.SetRunningFunc(m.ContainerRunning)
	return &volumeEnv{m: m, store: store, db: db, ctx: namespaces.WithNamespace(context.Background(), "test"), dir: dir}
}

// record writes a container record with mps, as create leaves it.
func (e *volumeEnv) record(t *testing.T, id, name string, mps []MountPoint, st State) Record {
	t.Helper()
	cfgA, err := marshalExt(typeConfig, Config{Name: name, Mounts: mps})
	if err != nil {
		t.Fatal(err)
	}
	stA, err := marshalExt(typeState, st)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.db.Containers().Create(e.ctx, containers.Container{
		ID: id, Labels: map[string]string{LabelName: name}, Runtime: containers.RuntimeInfo{Name: "io.berth.runc.v2"},
		Spec:       &jsonAny{typeURL: SpecTypeURL, value: []byte("{}")},
		Extensions: map[string]typeurlAny{ExtensionConfig: cfgA, ExtensionState: stA},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeRecord(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testID(c byte) string { return strings.Repeat(string(c), 64) }

func TestParseMountsCombinesAndChecks(t *testing.T) {
	e := newVolumeEnv(t)
	host := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(host, link); err != nil {
		t.Fatal(err)
	}
	src := e.record(t, testID('a'), "source", []MountPoint{
		{Mount: mountspec.Mount{Type: mountspec.TypeVolume, Source: "shared", Destination: "/shared", Anonymous: true}},
		{Mount: mountspec.Mount{Type: mountspec.TypeTmpfs, Destination: "/scratch"}},
	}, State{Status: StatusExited})
	o := MountOptions{
		Binds:       []string{"named:/data:ro", link + ":/host", "/anon"},
		MountFlags:  []string{"type=tmpfs,dst=/tmp,tmpfs-size=1m"},
		VolumesFrom: []string{src.Config.Name + ":ro"},
	}
	img := ocispec.ImageConfig{Volumes: map[string]struct{}{"/data": {}, "/logs": {}}}
	got, err := e.m.parseMounts(e.ctx, o, img)
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, mt := range got {
		dsts = append(dsts, mt.Destination)
	}
	// The user's first, then inherited, then the image's not overridden;
	// the source's tmpfs is not inherited.
	if want := []string{"/data", "/host", "/anon", "/tmp", "/shared", "/logs"}; !slices.Equal(dsts, want) {
		t.Fatalf("destinations %v, want %v", dsts, want)
	}
	if got[1].Source != host {
		t.Errorf("bind source %q, want the real path %q", got[1].Source, host)
	}
	if !got[4].ReadOnly || got[4].Anonymous || got[4].Source != "shared" {
		t.Errorf("inherited volume %+v: want shared, read-only, not this container's anonymous volume", got[4])
	}
	if !got[5].Anonymous || got[5].Source != "" || !got[0].ReadOnly {
		t.Errorf("image volume %+v, named %+v", got[5], got[0])
	}

	for _, tc := range []struct {
		o    MountOptions
		want error
		msg  string
	}{
		{MountOptions{Binds: []string{filepath.Join(host, "missing") + ":/x"}}, errdefs.ErrInvalidArgument, "does not exist"},
		{MountOptions{Binds: []string{"bad/name:/x"}}, errdefs.ErrInvalidArgument, "contains '/'"},
		{MountOptions{Binds: []string{"x:/x"}}, errdefs.ErrInvalidArgument, "shorter than two"},
		{MountOptions{MountFlags: []string{"type=volume,src=v1,dst=/x,volume-driver=nope"}}, errdefs.ErrNotFound, `driver "nope"`},
		{MountOptions{Binds: []string{"a1:/x", "a2:/x"}}, errdefs.ErrInvalidArgument, "duplicate mount point /x"},
		{MountOptions{VolumesFrom: []string{"nobody"}}, errdefs.ErrNotFound, "no such container"},
		{MountOptions{Tmpfs: []string{"relative"}}, errdefs.ErrInvalidArgument, "not an absolute path"},
	} {
		_, err := e.m.parseMounts(e.ctx, tc.o, ocispec.ImageConfig{})
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v, want %v mentioning %q", tc.o, err, tc.want, tc.msg)
		}
	}
	if vols, _ := e.store.List(e.ctx, volumes.Filter{}); len(vols) != 0 {
		t.Errorf("parsing created volumes: %+v", vols)
	}
}

func TestAcquireVolumesAndUndo(t *testing.T) {
	e := newVolumeEnv(t)
	if _, err := e.store.Create(e.ctx, volumes.Spec{Name: "existing"}); err != nil {
		t.Fatal(err)
	}
	id := testID('b')
	mps, undo, err := e.m.acquireVolumes(e.ctx, id, []mountspec.Mount{
		{Type: mountspec.TypeVolume, Source: "existing", Destination: "/a"},
		{Type: mountspec.TypeVolume, Source: "fresh", Destination: "/b", DriverOptions: map[string]string{"type": "tmpfs", "device": "tmpfs"}},
		{Type: mountspec.TypeVolume, Destination: "/c", Anonymous: true},
		{Type: mountspec.TypeBind, Source: "/srv", Destination: "/d"},
	})
	if err != nil {
		t.Fatal(err)
	}
	anon := mps[2].Source
	if len(anon) != 64 || mps[1].HostPath == "" || mps[1].Driver != "local" || mps[3].HostPath != "/srv" {
		t.Fatalf("mounts %+v", mps)
	}
	for _, name := range []string{"existing", "fresh", anon} {
		v, err := e.store.Get(e.ctx, name)
		if err != nil || !slices.Equal(v.Users, []string{id}) {
			t.Errorf("volume %s: %+v, %v; want used by the container", name, v, err)
		}
	}
	undo()
	vols, _ := e.store.List(e.ctx, volumes.Filter{})
	if len(vols) != 1 || vols[0].Name != "existing" || len(vols[0].Users) != 0 {
		t.Errorf("after undo: %+v; want only the existing volume, unused", vols)
	}

	// A failure half-way undoes what was done.
	_, _, err = e.m.acquireVolumes(e.ctx, id, []mountspec.Mount{
		{Type: mountspec.TypeVolume, Source: "first", Destination: "/a"},
		{Type: mountspec.TypeVolume, Source: "second", Destination: "/b", DriverOptions: map[string]string{"bogus": "1"}},
	})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad driver option: %v", err)
	}
	if vols, _ := e.store.List(e.ctx, volumes.Filter{}); len(vols) != 1 {
		t.Errorf("a failed acquire left volumes: %+v", vols)
	}
}

func TestContainerRunningAndReconcileVolumes(t *testing.T) {
	e := newVolumeEnv(t)
	running, stopped, gone := testID('c'), testID('d'), testID('e')
	e.record(t, running, "running", nil, State{Status: StatusRunning})
	e.record(t, stopped, "stopped", nil, State{Status: StatusExited})
	for _, id := range []string{running, stopped, gone} {
		if _, err := e.store.Acquire(e.ctx, id, volumes.Spec{Name: "data"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.store.Remove(e.ctx, "data", true); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), running) || strings.Contains(err.Error(), stopped) {
		t.Errorf("forced removal with a running user: %v", err)
	}
	if err := e.m.ReconcileVolumes(context.Background(), []string{"test"}); err != nil {
		t.Fatal(err)
	}
	v, err := e.store.Get(e.ctx, "data")
	if err != nil || !slices.Equal(v.Users, slices.Sorted(slices.Values([]string{running, stopped}))) {
		t.Errorf("after reconcile: %+v, %v; want the user without a container dropped", v, err)
	}
}

func TestMountModeAndOrder(t *testing.T) {
	mp := MountPoint{Mount: mountspec.Mount{Type: mountspec.TypeBind, ReadOnly: true, Relabel: "z", Propagation: "rslave"}}
	if got := mp.Mode(); got != "ro,z,rslave" {
		t.Errorf("Mode() = %q", got)
	}
	if mp.Name() != "" {
		t.Errorf("a bind has a volume name")
	}
	mps := []MountPoint{{Mount: mountspec.Mount{Destination: "/a/b/c"}}, {Mount: mountspec.Mount{Destination: "/z"}}, {Mount: mountspec.Mount{Destination: "/a/b"}}}
	var got []string
	for _, mp := range byDepth(mps) {
		got = append(got, mp.Destination)
	}
	if want := []string{"/z", "/a/b", "/a/b/c"}; !slices.Equal(got, want) {
		t.Errorf("byDepth = %v, want %v", got, want)
	}
}

// TestPrepareRootfs mounts a volume, binds and a tmpfs into a root
// filesystem whose /data is a symlink to /etc, as a start does, and
// releases them as an exit does.
func TestPrepareRootfs(t *testing.T) {
	require.Root(t)
	e := newVolumeEnv(t)
	layer := t.TempDir()
	for _, d := range []string{"etc", "bin"} {
		if err := os.Mkdir(filepath.Join(layer, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(layer, "etc", "passwd"), []byte("root:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(layer, "data")); err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	hostFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(hostFile, []byte("bound"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := testID('f')
	mps, _, err := e.m.acquireVolumes(e.ctx, id, []mountspec.Mount{
		{Type: mountspec.TypeVolume, Source: "vol", Destination: "/data"},
		{Type: mountspec.TypeBind, Source: host, Destination: "/srv/ro", ReadOnly: true},
		{Type: mountspec.TypeBind, Source: hostFile, Destination: "/etc/bound"},
		{Type: mountspec.TypeTmpfs, Destination: "/scratch", TmpfsOptions: []string{"size=1048576"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := e.record(t, id, "prep", mps, State{Status: StatusCreated})
	snapshot := []mount.Mount{{Type: "bind", Source: layer, Options: []string{"rbind"}}}
	dir := e.m.rootfsDir("test", id)
	t.Cleanup(func() { mount.UnmountRecursive(dir, unix.MNT_DETACH) })

	rootfs, err := e.m.prepareRootfs(e.ctx, "test", &r, snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if len(rootfs) != 1 || rootfs[0].Source != dir || !slices.Contains(rootfs[0].Options, "rbind") {
		t.Fatalf("rootfs mounts %+v", rootfs)
	}
	v, _ := e.store.Get(e.ctx, "vol")
	// The volume went on the container's /etc (where /data leads), filled
	// from it, and the bind of a file went inside the volume.
	if b, err := os.ReadFile(filepath.Join(v.Mountpoint, "passwd")); err != nil || !strings.HasPrefix(string(b), "root:") {
		t.Errorf("volume not filled from the image's /etc: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "marker"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(v.Mountpoint, "marker")); err != nil {
		t.Errorf("a write to the container's /etc did not reach the volume: %v", err)
	}
	if _, err := os.Stat("/etc/marker"); err == nil {
		t.Errorf("the host's /etc was written")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc", "bound")); err != nil || string(b) != "bound" {
		t.Errorf("file bind: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "srv", "ro", "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write to a read-only bind: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(dir, "scratch"), &st); err != nil || st.Type != unix.TMPFS_MAGIC || st.Blocks*uint64(st.Bsize) != 1<<20 {
		t.Errorf("tmpfs: %+v, %v", st, err)
	}
	if v.Mounted == nil || v.Mounted[0] != id {
		t.Errorf("volume not marked mounted: %+v", v)
	}

	e.m.releaseRunMounts(e.ctx, "test", &r)
	if left, _ := mount.MountedUnder(dir); len(left) != 0 {
		t.Errorf("mounts left after the exit: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("root filesystem folder left: %v", err)
	}
	if v, _ := e.store.Get(e.ctx, "vol"); len(v.Mounted) != 0 || len(v.Users) != 1 {
		t.Errorf("after the exit the volume is %+v; want still used, not mounted", v)
	}
	if _, err := os.Stat(filepath.Join(v.Mountpoint, "marker")); err != nil {
		t.Errorf("volume data lost at the exit: %v", err)
	}
}

// TestPrepareRootfsRefusesSwappedBind: a bind source that became a
// symlink after create fails the start, and nothing stays mounted.
func TestPrepareRootfsRefusesSwappedBind(t *testing.T) {
	require.Root(t)
	e := newVolumeEnv(t)
	layer := t.TempDir()
	parent := t.TempDir()
	host := filepath.Join(parent, "dir")
	if err := os.Mkdir(host, 0o755); err != nil {
		t.Fatal(err)
	}
	id := testID('9')
	mps, _, err := e.m.acquireVolumes(e.ctx, id, []mountspec.Mount{
		{Type: mountspec.TypeVolume, Source: "vol", Destination: "/a"},
		{Type: mountspec.TypeBind, Source: host, Destination: "/b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := e.record(t, id, "swap", mps, State{Status: StatusCreated})
	if err := os.Remove(host); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", host); err != nil {
		t.Fatal(err)
	}
	dir := e.m.rootfsDir("test", id)
	t.Cleanup(func() { mount.UnmountRecursive(dir, unix.MNT_DETACH) })
	_, err = e.m.prepareRootfs(e.ctx, "test", &r, []mount.Mount{{Type: "bind", Source: layer, Options: []string{"rbind"}}})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("start with a swapped bind source: %v", err)
	}
	if left, _ := mount.MountedUnder(dir); len(left) != 0 {
		t.Errorf("mounts left after the failed start: %v", left)
	}
	if v, _ := e.store.Get(e.ctx, "vol"); len(v.Mounted) != 0 {
		t.Errorf("volume still mounted after the failed start: %+v", v)
	}
}
