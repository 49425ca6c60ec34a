package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/images/archive"
	"github.com/berthd/berth/integration/testimages"
)

// containerd is a private Debian containerd (1.6) daemon in a temporary
// folder: the reference consumer of the archives berth exports.
type containerd struct {
	t    *testing.T
	dir  string
	sock string
	ctr  string
	cmd  *exec.Cmd
}

func needBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, name)
	}
	return p
}

func startContainerd(t *testing.T) *containerd {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "root")
	}
	daemon := needBinary(t, "containerd")
	c := &containerd{t: t, ctr: needBinary(t, "ctr")}
	needBinary(t, "containerd-shim-runc-v2")
	needBinary(t, "runc")
	// Short, so the socket path fits in sun_path.
	dir, err := os.MkdirTemp("", "b-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir, c.sock = dir, filepath.Join(dir, "c.sock")
	t.Cleanup(c.stop)
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	c.cmd = exec.Command(daemon, "--config", cfg)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	// Wait until the API answers or the daemon gives up.
	for i := 0; ; i++ {
		if _, err := c.run("version"); err == nil {
			return c
		}
		if i == 300 {
			c.log()
			t.Fatal("containerd did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *containerd) log() {
	data, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
	c.t.Logf("containerd log:\n%s", data)
}

func (c *containerd) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.ctr, append([]string{"--address", c.sock, "--namespace", "berth-archive"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func (c *containerd) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// stop ends the daemon and removes every mount and file it made.
func (c *containerd) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(c.dir))
	if err != nil {
		c.t.Errorf("list mounts: %v", err)
	}
	slices.SortFunc(mounts, func(a, b *mountinfo.Info) int { return len(b.Mountpoint) - len(a.Mountpoint) })
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil {
			c.t.Errorf("unmount %s: %v", m.Mountpoint, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		c.t.Errorf("remove %s: %v", c.dir, err)
	}
}

func (c *containerd) save(name string, data []byte) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// TestContainerdImportsExports checks berth's exports against Debian's
// containerd: `ctr images import` with and without unpacking, running the
// unpacked image, and berth importing what `ctr images export` writes.
func TestContainerdImportsExports(t *testing.T) {
	needBusybox(t)
	c := startContainerd(t)
	defer func() {
		if t.Failed() {
			c.log()
		}
	}()
	ml := build(t, testimages.MultiLayer)
	mp := build(t, testimages.MultiPlatform)
	bb := build(t, testimages.Busybox, testimages.WithName("docker.io/berth/from-docker:v1"))
	src := newEnv(t)
	src.mustImport(ociArchive(t, testimages.WriteOptions{}, ml, mp), archive.ImportOptions{AllPlatforms: true})
	src.mustImport(dockerArchive(t, bb), archive.ImportOptions{})
	imgs := src.images()
	want := names(imgs)

	listed := func() []string {
		out := strings.Fields(c.must("images", "ls", "-q"))
		slices.Sort(out)
		return out
	}
	t.Run("no-unpack, current platform", func(t *testing.T) {
		p := c.save("current.tar", src.export(imgs, archive.ExportOptions{}))
		c.must("images", "import", "--no-unpack", p)
		if got := listed(); !slices.Equal(got, want) {
			t.Fatalf("ctr lists %v, want %v", got, want)
		}
		check := c.must("images", "check")
		t.Logf("images check:\n%s", check)
		for _, n := range want {
			if !strings.Contains(check, n) {
				t.Errorf("images check does not list %s:\n%s", n, check)
			}
		}
		if strings.Contains(check, "incomplete") || strings.Contains(check, "missing") {
			t.Errorf("images check:\n%s", check)
		}
		c.must(append([]string{"images", "rm"}, want...)...)
	})

	t.Run("unpack, all platforms", func(t *testing.T) {
		p := c.save("all.tar", src.export(imgs, archive.ExportOptions{AllPlatforms: true}))
		c.must("images", "import", "--all-platforms", p)
		if got := listed(); !slices.Equal(got, want) {
			t.Fatalf("ctr lists %v, want %v", got, want)
		}
		out := c.must("run", "--rm", "--runc-root", filepath.Join(c.dir, "runc"), testimages.MultiLayerName, "ml")
		if out != testimages.MultiLayerOutput+"\n" {
			t.Errorf("the unpacked multilayer image printed %q", out)
		}
		out = c.must("run", "--rm", "--runc-root", filepath.Join(c.dir, "runc"), "docker.io/berth/from-docker:v1", "bb", "echo", "ok")
		if out != "ok\n" {
			t.Errorf("the unpacked docker image printed %q", out)
		}
	})

	t.Run("berth imports ctr's export", func(t *testing.T) {
		out := filepath.Join(c.dir, "from-ctr.tar")
		c.must("images", "export", "--all-platforms", out, testimages.MultiPlatformName, testimages.MultiLayerName)
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		dst := newEnv(t)
		got := dst.mustImport(data, archive.ImportOptions{AllPlatforms: true})
		slices.SortFunc(got, func(a, b images.Image) int { return strings.Compare(a.Name, b.Name) })
		if len(got) != 2 || got[0].Name != testimages.MultiLayerName || got[0].Target.Digest != ml.Target.Digest ||
			got[1].Name != testimages.MultiPlatformName || got[1].Target.Digest != mp.Target.Digest {
			t.Errorf("imported %+v", got)
		}
	})
}
