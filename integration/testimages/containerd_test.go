package testimages

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// containerd is a private containerd 1.6 daemon, the reference consumer
// the images are checked against.
type containerd struct {
	dir  string
	sock string
	ctr  string
	cmd  *exec.Cmd
}

const ctrNamespace = "testimages"

func startContainerd(t *testing.T) *containerd {
	t.Helper()
	needRoot(t)
	daemon := needBinary(t, "containerd")
	c := &containerd{ctr: needBinary(t, "ctr")}
	needBinary(t, "containerd-shim-runc-v2")
	needBinary(t, "runc")
	dir, err := os.MkdirTemp("", "b-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir, c.sock = dir, filepath.Join(dir, "c.sock")
	t.Cleanup(func() { c.stop(t) })
	// Plugins that would write outside dir (opt installs into /opt) or
	// are irrelevant here stay off.
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	c.cmd = exec.Command(daemon, "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	// Readiness, not timing: poll until the API answers or the daemon dies.
	for i := 0; ; i++ {
		if _, err := c.run("version"); err == nil {
			return c
		}
		if i == 300 {
			c.log(t)
			t.Fatal("containerd did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *containerd) log(t *testing.T) {
	data, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
	t.Logf("containerd log:\n%s", data)
}

func (c *containerd) run(args ...string) (string, error) {
	cmd := exec.Command(c.ctr, append([]string{"--address", c.sock, "--namespace", ctrNamespace}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func (c *containerd) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// stop ends the daemon and removes everything it made.
func (c *containerd) stop(t *testing.T) {
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
		t.Errorf("list mounts: %v", err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].Mountpoint) > len(mounts[j].Mountpoint) })
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", m.Mountpoint, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("remove %s: %v", c.dir, err)
	}
}

// save writes an archive into the daemon's directory.
func (c *containerd) save(t *testing.T, name string, write func(io.Writer) error) string {
	t.Helper()
	p := filepath.Join(c.dir, name)
	if err := SaveFile(p, write); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkMounted mounts ref's unpacked snapshot and checks it against want.
func (c *containerd) checkMounted(t *testing.T, ref string, want Expectation) {
	t.Helper()
	target, err := os.MkdirTemp(c.dir, "mnt-")
	if err != nil {
		t.Fatal(err)
	}
	c.must(t, "images", "mount", ref, target)
	defer c.must(t, "images", "unmount", "--rm", target)
	if err := want.Check(target); err != nil {
		t.Errorf("%s as unpacked by containerd: %v", ref, err)
	}
}

// runImage runs ref's default command (or args) and returns its output.
func (c *containerd) runImage(t *testing.T, ref, id string, args ...string) string {
	t.Helper()
	return c.must(t, append([]string{"run", "--rm", "--runc-root", filepath.Join(c.dir, "runc"), "--fifo-dir", filepath.Join(c.dir, "fifo"), ref, id}, args...)...)
}

func (c *containerd) imageNames(t *testing.T) []string {
	t.Helper()
	return strings.Fields(c.must(t, "images", "ls", "-q"))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestContainerdImport imports every kind of archive into a real
// containerd, unpacks, mounts and runs the images.
func TestContainerdImport(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	c := startContainerd(t)

	t.Run("busybox OCI archive", func(t *testing.T) {
		img, err := Busybox()
		if err != nil {
			t.Fatal(err)
		}
		p := c.save(t, "busybox.tar", func(w io.Writer) error { return WriteOCIArchive(w, WriteOptions{}, img) })
		c.must(t, "images", "import", p)
		if names := c.imageNames(t); !contains(names, BusyboxName) {
			t.Fatalf("imported names %q, want %s", names, BusyboxName)
		}
		c.checkMounted(t, BusyboxName, BusyboxExpected())
		if out := c.runImage(t, BusyboxName, "bb1", "cat", "/www/index.html"); out != IndexHTML {
			t.Errorf("cat /www/index.html printed %q", out)
		}
		if out := c.runImage(t, BusyboxName, "bb2", "id"); !strings.Contains(out, "uid=0(root) gid=0(root)") {
			t.Errorf("id printed %q", out)
		}
	})

	for _, tc := range []struct {
		compression Compression
		opts        WriteOptions
	}{
		{Gzip, WriteOptions{}},
		{Zstd, WriteOptions{DockerManifest: true, NestedIndex: true}},
		{Uncompressed, WriteOptions{NestedIndex: true}},
	} {
		name := fmt.Sprintf("docker.io/berth/multilayer-%s:nested-%v", tc.compression, tc.opts.NestedIndex)
		t.Run("multilayer OCI archive "+name, func(t *testing.T) {
			img, err := MultiLayer(WithCompression(tc.compression), WithName(name))
			if err != nil {
				t.Fatal(err)
			}
			p := c.save(t, "ml.tar", func(w io.Writer) error { return WriteOCIArchive(w, tc.opts, img) })
			c.must(t, "images", "import", p)
			c.checkMounted(t, name, MultiLayerExpected())
			if out := c.runImage(t, name, "ml-"+string(tc.compression)); out != MultiLayerOutput+"\n" {
				t.Errorf("default command printed %q, want %q", out, MultiLayerOutput)
			}
		})
	}

	t.Run("docker archive", func(t *testing.T) {
		const name = "docker.io/berth/multilayer-docker:latest"
		ml, err := MultiLayer(WithName(name), WithCompression(Zstd))
		if err != nil {
			t.Fatal(err)
		}
		bb, err := Busybox(WithName("docker.io/berth/busybox-docker:v1"))
		if err != nil {
			t.Fatal(err)
		}
		p := c.save(t, "docker.tar", func(w io.Writer) error { return WriteDockerArchive(w, ml, bb) })
		c.must(t, "images", "import", p)
		names := c.imageNames(t)
		if !contains(names, name) || !contains(names, "docker.io/berth/busybox-docker:v1") {
			t.Fatalf("imported names %q", names)
		}
		c.checkMounted(t, name, MultiLayerExpected())
		if out := c.runImage(t, name, "ml-docker", "id", "-u"); out != "1000\n" {
			t.Errorf("id -u printed %q, want the image's user berth (1000)", out)
		}
		if out := c.runImage(t, "docker.io/berth/busybox-docker:v1", "bb-docker", "echo", "ok"); out != "ok\n" {
			t.Errorf("echo printed %q", out)
		}
	})

	t.Run("no-unpack", func(t *testing.T) {
		const name = "docker.io/berth/busybox-none:latest"
		img, err := Busybox(WithCompression(Uncompressed), WithName(name))
		if err != nil {
			t.Fatal(err)
		}
		p := c.save(t, "none.tar", func(w io.Writer) error { return WriteOCIArchive(w, WriteOptions{}, img) })
		c.must(t, "images", "import", "--no-unpack", p)
		if out := c.must(t, "images", "check"); !strings.Contains(out, name) || !strings.Contains(out, "complete") {
			t.Errorf("images check:\n%s", out)
		}
	})

	t.Run("multi-platform", func(t *testing.T) {
		img, err := MultiPlatform()
		if err != nil {
			t.Fatal(err)
		}
		p := c.save(t, "mp.tar", func(w io.Writer) error { return WriteOCIArchive(w, WriteOptions{}, img) })
		c.must(t, "images", "import", "--all-platforms", p)
		out := c.must(t, "images", "ls")
		for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
			if !strings.Contains(out, p) {
				t.Errorf("images ls does not list %s:\n%s", p, out)
			}
		}
		if out := c.runImage(t, MultiPlatformName, "mp", "echo", "host"); out != "host\n" {
			t.Errorf("echo printed %q", out)
		}
		content := c.must(t, "content", "ls", "-q")
		for _, m := range mustChildren(t, img) {
			if !strings.Contains(content, m.Digest.String()) {
				t.Errorf("manifest %s (%v) not imported", m.Digest, m.Platform)
			}
		}
	})

	t.Run("symlink data", func(t *testing.T) {
		img, err := SymlinkData()
		if err != nil {
			t.Fatal(err)
		}
		p := c.save(t, "sd.tar", func(w io.Writer) error { return WriteOCIArchive(w, WriteOptions{}, img) })
		c.must(t, "images", "import", p)
		want := BusyboxExpected()
		want.Present["data"] = link("/etc")
		c.checkMounted(t, SymlinkDataName, want)
	})

	t.Run("bench layout archive", func(t *testing.T) {
		layout := filepath.Join(c.dir, "bench")
		spec := BenchSpec{Layers: 3, Size: 8 << 20, Busybox: true}
		if _, err := GenerateBench(layout, spec); err != nil {
			t.Fatal(err)
		}
		p := c.save(t, "bench.tar", func(w io.Writer) error { return WriteLayoutArchive(w, layout) })
		c.must(t, "images", "import", p)
		out := c.runImage(t, BenchName, "bench", "ls", "/opt/bench")
		if strings.Fields(out)[0] != "l0" || len(strings.Fields(out)) != 3 {
			t.Errorf("ls /opt/bench printed %q", out)
		}
	})

	if t.Failed() {
		c.log(t)
	}
}

func mustChildren(t *testing.T, img *Image) []ocispec.Descriptor {
	t.Helper()
	children, err := Children(img.Target, img.Blobs[img.Target.Digest])
	if err != nil {
		t.Fatal(err)
	}
	if len(children) == 0 {
		t.Fatal(errors.New("index without manifests"))
	}
	return children
}
