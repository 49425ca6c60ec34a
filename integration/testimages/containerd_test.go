package testimages

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	ctrd "github.com/berthd/berth/internal/testutil/containerd"
)

// containerd is a private containerd 1.6 daemon, the reference consumer
// the images are checked against.
type containerd struct{ *ctrd.Daemon }

const ctrNamespace = "testimages"

func startContainerd(t *testing.T) *containerd {
	return &containerd{ctrd.Start(t, ctrNamespace)}
}

// must runs ctr and fails t if it fails.
func (c *containerd) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// save writes an archive into the daemon's directory.
func (c *containerd) save(t *testing.T, name string, write func(io.Writer) error) string {
	t.Helper()
	p := filepath.Join(c.Dir, name)
	if err := SaveFile(p, write); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkMounted mounts ref's unpacked snapshot and checks it against want.
func (c *containerd) checkMounted(t *testing.T, ref string, want Expectation) {
	t.Helper()
	target, err := os.MkdirTemp(c.Dir, "mnt-")
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
	return c.must(t, append([]string{"run", "--rm", "--runc-root", filepath.Join(c.Dir, "runc"), "--fifo-dir", filepath.Join(c.Dir, "fifo"), ref, id}, args...)...)
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
		layout := filepath.Join(c.Dir, "bench")
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
		c.Log()
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
