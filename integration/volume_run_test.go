package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/daemon"
)

// volumeImage is busybox with VOLUME /data holding a folder and a file
// owned by 1000:1000 with modes of their own, for copy-up.
func volumeImage(t *testing.T) *testimages.Image {
	t.Helper()
	base, err := testimages.BusyboxLayer()
	if err != nil {
		t.Fatal(err)
	}
	l, err := testimages.NewLayer(
		testimages.Dir("data", 0o750).Owner(1000, 1000),
		testimages.File("data/hello", []byte("from the image\n"), 0o640).Owner(1000, 1000),
	)
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimages.BuildImage(testimages.ImageSpec{
		Name:   "docker.io/library/volimg:latest",
		Layers: []testimages.Layer{base, l},
		Config: ocispec.ImageConfig{Env: []string{testimages.DefaultPath}, Cmd: []string{"sh"}, Volumes: map[string]struct{}{"/data": {}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func loadImages(t *testing.T, d *daemon.Daemon, imgs ...*testimages.Image) {
	t.Helper()
	d.MustBerth("load", "-i", writeArchive(t, t.TempDir(), imgs...))
}

// volumeByName reads one volume with berth volume inspect.
func volumeByName(t *testing.T, d *daemon.Daemon, name string) volumeJSON {
	t.Helper()
	var vols []volumeJSON
	if err := json.Unmarshal([]byte(d.MustBerth("volume", "inspect", name)), &vols); err != nil || len(vols) != 1 {
		t.Fatalf("volume inspect %s: %v", name, err)
	}
	return vols[0]
}

type mountJSON struct {
	Type, Name, Source, Destination, Driver, Mode, Propagation string
	RW                                                         bool
}

func mountsOf(t *testing.T, d *daemon.Daemon, ref string) []mountJSON {
	t.Helper()
	var out []mountJSON
	if err := json.Unmarshal([]byte(d.MustBerth("inspect", "-f", "{{json .Mounts}}", ref)), &out); err != nil {
		t.Fatalf("inspect mounts of %s: %v", ref, err)
	}
	return out
}

// waitExited waits until container ref has exited.
func waitExited(t *testing.T, d *daemon.Daemon, ref string) {
	t.Helper()
	waitState(t, d, ref, "exited", func(s inspectedState) bool { return s.Status == "exited" })
}

// TestVolumeRunDataOutlivesContainersAndDaemon: data written to a named
// volume is read back by a new container after the writer's removal,
// after a berthd restart and after berthd was killed with SIGKILL while
// a container wrote to it.
func TestVolumeRunDataOutlivesContainersAndDaemon(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	d.MustBerth("run", "--name", "writer", "-v", "data:/data", "busybox", "sh", "-c", "echo one > /data/f")
	d.MustBerth("rm", "writer")
	if out := d.MustBerth("run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"); out != "one\n" {
		t.Fatalf("read back after rm: %q", out)
	}
	d.Restart()
	if out := d.MustBerth("run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"); out != "one\n" {
		t.Fatalf("read back after a restart: %q", out)
	}

	d.MustBerth("run", "-d", "--name", "busy", "-v", "data:/data", "--tmpfs", "/scratch", "busybox", "sh", "-c",
		"echo two >> /data/f; while [ ! -e /data/go ]; do sleep 0.1; done; echo three >> /data/f")
	vol := volumeByName(t, d, "data")
	waitUntil(t, "the container's first write", func() bool {
		b, _ := os.ReadFile(filepath.Join(vol.Mountpoint, "f"))
		return string(b) == "one\ntwo\n"
	})
	d.Kill()
	d.Restart()
	if err := os.WriteFile(filepath.Join(vol.Mountpoint, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitExited(t, d, "busy")
	d.MustBerth("rm", "busy")
	if out := d.MustBerth("run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"); out != "one\ntwo\nthree\n" {
		t.Errorf("read back after kill -9: %q", out)
	}
	if got := volumeByName(t, d, "data"); len(got.Containers) != 0 {
		t.Errorf("volume still used by %v after its containers went", got.Containers)
	}
	// The exit after the restart released the run's mounts.
	if left := daemon.MountsUnder(filepath.Join(d.State, "io.berth.service.v1.containers")); len(left) != 0 {
		t.Errorf("mounts left after the exit: %v", left)
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestVolumeRunCopyUp: a new volume is filled with what the image has at
// its path, owners and modes kept; a volume with data, or nocopy, is not.
func TestVolumeRunCopyUp(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	loadImages(t, d, volumeImage(t))
	stat := "stat -c '%u:%g %a %n' /data /data/hello; cat /data/hello"
	want := "1000:1000 750 /data\n1000:1000 640 /data/hello\nfrom the image\n"
	// The image's VOLUME: an anonymous volume, filled.
	if out := d.MustBerth("run", "--rm", "volimg", "sh", "-c", stat); out != want {
		t.Errorf("anonymous image volume:\n%s\nwant\n%s", out, want)
	}
	// A named volume created on first use, filled; it keeps the copy.
	if out := d.MustBerth("run", "--rm", "-v", "named:/data", "volimg", "sh", "-c", stat); out != want {
		t.Errorf("new named volume:\n%s\nwant\n%s", out, want)
	}
	host := volumeByName(t, d, "named").Mountpoint
	if b, err := os.ReadFile(filepath.Join(host, "hello")); err != nil || string(b) != "from the image\n" {
		t.Errorf("volume data on the host: %q, %v", b, err)
	}
	// A volume that holds something is left alone.
	d.MustBerth("run", "--rm", "-v", "full:/data", "busybox", "sh", "-c", "echo mine > /data/own")
	if out := d.MustBerth("run", "--rm", "-v", "full:/data", "volimg", "ls", "/data"); out != "own\n" {
		t.Errorf("volume with data got %q", out)
	}
	if out := d.MustBerth("run", "--rm", "-v", "empty:/data:nocopy", "volimg", "ls", "-A", "/data"); out != "" {
		t.Errorf("nocopy volume got %q", out)
	}
}

// TestVolumeRunAnonymous: anonymous volumes (-v /path, image VOLUMEs) go
// with --rm and rm -v, and stay with a plain rm.
func TestVolumeRunAnonymous(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	loadImages(t, d, volumeImage(t))
	d.MustBerth("run", "--rm", "-v", "/anon", "volimg", "true")
	if vols := volumesOf(t, d); len(vols) != 0 {
		t.Errorf("--rm left volumes: %v", volumeNames(vols))
	}
	d.MustBerth("create", "--name", "c1", "-v", "/anon", "-v", "kept:/kept", "busybox", "true")
	vols := volumesOf(t, d)
	if len(vols) != 2 {
		t.Fatalf("volumes of c1: %v", volumeNames(vols))
	}
	mounts := mountsOf(t, d, "c1")
	if len(mounts) != 2 || mounts[0].Type != "volume" || mounts[0].Destination != "/anon" || len(mounts[0].Name) != 64 ||
		mounts[0].Driver != "local" || !mounts[0].RW || mounts[0].Source == "" || mounts[1].Name != "kept" {
		t.Errorf("inspect Mounts: %+v", mounts)
	}
	d.MustBerth("rm", "-v", "c1")
	if got := volumeNames(volumesOf(t, d)); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("after rm -v: %v; want the named volume only", got)
	}
	d.MustBerth("create", "--name", "c2", "volimg", "true")
	anon := mountsOf(t, d, "c2")[0].Name
	d.MustBerth("rm", "c2")
	vols = volumesOf(t, d)
	if got := volumeNames(vols); !slices.Contains(got, anon) || len(got) != 2 {
		t.Errorf("after rm without -v: %v; want %s kept", got, anon)
	}
	for _, v := range vols {
		if v.Name == anon && (!v.Anonymous || len(v.Containers) != 0) {
			t.Errorf("kept anonymous volume %+v", v)
		}
	}
}

// TestVolumeRunVolumesFrom: a container mounts another's volumes and binds
// at the same places, read-only with :ro; its tmpfs mounts are not shared.
func TestVolumeRunVolumesFrom(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "h"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.MustBerth("create", "--name", "src", "-v", "shared:/shared", "-v", "/anon", "-v", host+":/host", "--tmpfs", "/scratch", "busybox", "true")
	out := d.MustBerth("run", "--rm", "--volumes-from", "src", "busybox", "sh", "-c",
		"echo from-user > /shared/f; echo x > /anon/g; cat /host/h; grep -c ' /scratch ' /proc/mounts || true")
	if out != "host\n0\n" {
		t.Errorf("--volumes-from run printed %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(volumeByName(t, d, "shared").Mountpoint, "f")); err != nil || string(b) != "from-user\n" {
		t.Errorf("shared volume: %q, %v", b, err)
	}
	r := d.Berth("run", "--rm", "--volumes-from", "src:ro", "busybox", "sh", "-c", "echo x > /shared/f")
	wantExit(t, r, 1, "Read-only file system")
	// The anonymous volume is src's: the user's --rm did not take it.
	anon := mountsOf(t, d, "src")[1].Name
	if v := volumeByName(t, d, anon); len(v.Containers) != 1 {
		t.Errorf("src's anonymous volume after the user's --rm: %+v", v)
	}
	wantExit(t, d.Berth("run", "--rm", "--volumes-from", "nobody", "busybox", "true"), 125, "no such container: nobody")
}

// TestVolumeRunReadOnlyAndTmpfs: read-only volumes and binds refuse
// writes; tmpfs mounts have their size limit and mode.
func TestVolumeRunReadOnlyAndTmpfs(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	host := t.TempDir()
	for _, args := range [][]string{
		{"-v", "ro:/d:ro"},
		{"--mount", "type=volume,src=ro2,dst=/d,readonly"},
		{"-v", host + ":/d:ro"},
		{"--mount", "type=bind,src=" + host + ",dst=/d,readonly"},
	} {
		r := d.Berth(append(append([]string{"run", "--rm"}, args...), "busybox", "touch", "/d/x")...)
		wantExit(t, r, 1, "Read-only file system")
	}
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Errorf("read-only bind was written: %v", entries)
	}
	d.MustBerth("run", "--rm", "-v", host+":/d", "busybox", "touch", "/d/rw")
	if _, err := os.Stat(filepath.Join(host, "rw")); err != nil {
		t.Errorf("read-write bind: %v", err)
	}

	r := d.Berth("run", "--rm", "--tmpfs", "/t:size=1m", "busybox", "dd", "if=/dev/zero", "of=/t/f", "bs=1k", "count=2048")
	wantExit(t, r, 1, "No space left on device")
	out := d.MustBerth("run", "--rm", "--mount", "type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=1770", "busybox", "sh", "-c",
		"stat -c %a /t; grep ' /t ' /proc/mounts")
	if !strings.HasPrefix(out, "1770\n") || !strings.Contains(out, "size=2048k") || !strings.Contains(out, "noexec") {
		t.Errorf("tmpfs mount:\n%s", out)
	}
}

// TestVolumeRunSymlinkDestination: an image whose /data is a symlink to
// /etc gets a volume or bind at /data mounted on its own /etc, never on
// the host's.
func TestVolumeRunSymlinkDestination(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	img, err := testimages.SymlinkData()
	if err != nil {
		t.Fatal(err)
	}
	loadImages(t, d, img)
	marker := fmt.Sprintf("berth-volume-test-%d", os.Getpid())
	hostEtc, _ := os.ReadDir("/etc")
	out := d.MustBerth("run", "--rm", "-v", "sym:/data", testimages.SymlinkDataName, "sh", "-c",
		"echo inside > /data/"+marker+"; readlink /data; cat /etc/"+marker+"; grep -c ' /etc ' /proc/mounts")
	if out != "/etc\ninside\n1\n" {
		t.Errorf("container printed %q; want the volume on the container's /etc", out)
	}
	if _, err := os.Stat(filepath.Join("/etc", marker)); err == nil {
		os.Remove(filepath.Join("/etc", marker))
		t.Fatalf("the volume was mounted on the host's /etc")
	}
	if b, err := os.ReadFile(filepath.Join(volumeByName(t, d, "sym").Mountpoint, marker)); err != nil || string(b) != "inside\n" {
		t.Errorf("marker in the volume: %q, %v", b, err)
	}
	host := t.TempDir()
	d.MustBerth("run", "--rm", "-v", host+":/data", testimages.SymlinkDataName, "sh", "-c", "echo bound > /etc/"+marker)
	if b, err := os.ReadFile(filepath.Join(host, marker)); err != nil || string(b) != "bound\n" {
		t.Errorf("marker in the bound folder: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join("/etc", marker)); err == nil {
		os.Remove(filepath.Join("/etc", marker))
		t.Fatalf("the bind was mounted on the host's /etc")
	}
	if after, _ := os.ReadDir("/etc"); len(after) != len(hostEtc) {
		t.Errorf("the host's /etc changed: %d entries, then %d", len(hostEtc), len(after))
	}
}

// TestVolumeRunBadInput: mistakes are one-line errors with exit code 125,
// and nothing is created; volumes in use are not removed.
func TestVolumeRunBadInput(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	missing := filepath.Join(t.TempDir(), "missing")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-v", "bad/name:/x"}, `volume name "bad/name" is invalid`},
		{[]string{"-v", "a:/x"}, `volume name "a" is invalid: it is shorter than two characters`},
		{[]string{"-v", "..:/x"}, `volume name ".." is invalid`},
		{[]string{"-v", "ok:relative"}, `not an absolute path`},
		{[]string{"-v", "ok:/x:rx"}, `unknown option "rx"`},
		{[]string{"-v", "ok:/"}, `destination must not be '/'`},
		{[]string{"--mount", "type=volume,src=v1,dst=/x,volume-driver=nope"}, `volume driver "nope" is not available (available: local)`},
		{[]string{"--mount", "type=nfs,dst=/x"}, `type "nfs" is not supported`},
		{[]string{"--mount", "src=v1"}, `destination (dst, target) is required`},
		{[]string{"--tmpfs", "/t:size=huge"}, `size must be positive`},
		{[]string{"-v", missing + ":/x"}, "bind source path does not exist: " + missing},
		{[]string{"--mount", "type=bind,src=" + missing + ",dst=/x"}, "bind source path does not exist: " + missing},
		{[]string{"-v", "v1:/x", "-v", "v2:/x"}, "duplicate mount point /x"},
		{[]string{"--volumes-from", "nobody"}, "no such container: nobody"},
	} {
		r := d.Berth(append(append([]string{"run", "--rm"}, c.args...), "busybox", "true")...)
		wantExit(t, r, 125, c.want)
		if strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
			t.Errorf("%v: error is not one line: %q", c.args, r.Stderr)
		}
	}
	if records, active := containersLeft(t, d); len(records) != 0 || len(active) != 0 {
		t.Errorf("bad input left containers %v, snapshots %v", records, active)
	}
	if vols := volumesOf(t, d); len(vols) != 0 {
		t.Errorf("bad input left volumes %v", volumeNames(vols))
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("the missing bind source was created: %v", err)
	}

	// In use by a stopped container: refused without -f.
	d.MustBerth("run", "--name", "stopped", "-v", "held:/d", "busybox", "sh", "-c", "echo keep > /d/f")
	wantExit(t, d.Berth("volume", "rm", "held"), 1, `volume "held" is in use by container(s)`)
	// In use by a running one: refused even with -f.
	d.MustBerth("run", "-d", "--name", "running", "-v", "busy:/d", "busybox", "sleep", "60")
	wantExit(t, d.Berth("volume", "rm", "-f", "busy"), 1, `volume "busy" is in use by running container(s)`)
	wantExit(t, d.Berth("volume", "prune", "-f", "--all"), 0)
	if got := volumeNames(volumesOf(t, d)); !slices.Equal(got, []string{"busy", "held"}) {
		t.Errorf("volumes after refused removals: %v", got)
	}
	if out := d.MustBerth("run", "--rm", "-v", "held:/d", "busybox", "cat", "/d/f"); out != "keep\n" {
		t.Errorf("held volume data: %q", out)
	}
	// A stopped container's volume goes with -f.
	d.MustBerth("volume", "rm", "-f", "held")
	d.MustBerth("rm", "-f", "running")
	d.MustBerth("volume", "rm", "busy")
}

// TestVolumeRunCopyAndExport: berth cp sees and writes a container's
// volumes and binds whether it runs or not, and refuses to write through
// a read-only one; export leaves them out. Nothing stays mounted.
func TestVolumeRunCopyAndExport(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	bind := t.TempDir()
	os.WriteFile(filepath.Join(bind, "b.txt"), []byte("from the bind\n"), 0o644)
	d.MustBerth("create", "--name", "cpvol", "-v", "cpdata:/data", "-v", bind+":/bind:ro", "busybox", "sleep", "60")
	src := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(src, []byte("copied in\n"), 0o644)

	// Stopped (never started): the copy lands in the volume.
	d.MustBerth("cp", src, "cpvol:/data/in.txt")
	host := volumeByName(t, d, "cpdata").Mountpoint
	if b, err := os.ReadFile(filepath.Join(host, "in.txt")); err != nil || string(b) != "copied in\n" {
		t.Errorf("cp into a stopped container's volume: %q, %v", b, err)
	}
	out := filepath.Join(t.TempDir(), "out.txt")
	d.MustBerth("cp", "cpvol:/bind/b.txt", out)
	if b, _ := os.ReadFile(out); string(b) != "from the bind\n" {
		t.Errorf("cp from a stopped container's bind: %q", b)
	}
	if r := d.Berth("cp", src, "cpvol:/bind/"); r.ExitCode == 0 {
		t.Error("cp into a read-only bind of a stopped container succeeded")
	}
	if _, err := os.Stat(filepath.Join(bind, "in.txt")); err == nil {
		t.Error("cp wrote through a read-only bind")
	}
	if m := daemon.MountsUnder(d.State); len(m) > 0 {
		t.Errorf("mounts left after cp on a stopped container: %v", m)
	}

	// Running: the same, and the container sees the copy at once.
	d.MustBerth("start", "cpvol")
	d.MustBerth("cp", src, "cpvol:/data/run.txt")
	if got := d.MustBerth("exec", "cpvol", "cat", "/data/run.txt", "/data/in.txt"); got != "copied in\ncopied in\n" {
		t.Errorf("volume as the running container sees it: %q", got)
	}
	d.MustBerth("exec", "cpvol", "sh", "-c", "echo layer > /layer.txt")
	tarPath := filepath.Join(t.TempDir(), "fs.tar")
	d.MustBerth("export", "-o", tarPath, "cpvol")
	data, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range tarNames(t, string(data)) {
		names = append(names, strings.TrimPrefix(n, "./"))
	}
	if !slices.Contains(names, "layer.txt") {
		t.Errorf("export of a running container lacks its own file: %v", names)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "data/") && n != "data/" || strings.HasPrefix(n, "bind/") && n != "bind/" {
			t.Errorf("export holds %s, from a volume or bind", n)
		}
	}
	d.MustBerth("rm", "-f", "cpvol")
}
