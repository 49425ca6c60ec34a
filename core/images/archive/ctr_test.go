package archive_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/images/archive"
	"github.com/berthd/berth/integration/testimages"
	ctrd "github.com/berthd/berth/internal/testutil/containerd"
)

// containerd is a private Debian containerd (1.6) daemon: the reference
// consumer of the archives berth exports.
type containerd struct{ *ctrd.Daemon }

func startContainerd(t *testing.T) *containerd {
	return &containerd{ctrd.Start(t, "berth-archive")}
}

func (c *containerd) save(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(c.Dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
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
			c.Log()
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
		out := strings.Fields(c.Must("images", "ls", "-q"))
		slices.Sort(out)
		return out
	}
	t.Run("no-unpack, current platform", func(t *testing.T) {
		p := c.save(t, "current.tar", src.export(imgs, archive.ExportOptions{}))
		c.Must("images", "import", "--no-unpack", p)
		if got := listed(); !slices.Equal(got, want) {
			t.Fatalf("ctr lists %v, want %v", got, want)
		}
		check := c.Must("images", "check")
		t.Logf("images check:\n%s", check)
		for _, n := range want {
			if !strings.Contains(check, n) {
				t.Errorf("images check does not list %s:\n%s", n, check)
			}
		}
		if strings.Contains(check, "incomplete") || strings.Contains(check, "missing") {
			t.Errorf("images check:\n%s", check)
		}
		c.Must(append([]string{"images", "rm"}, want...)...)
	})

	t.Run("unpack, all platforms", func(t *testing.T) {
		p := c.save(t, "all.tar", src.export(imgs, archive.ExportOptions{AllPlatforms: true}))
		c.Must("images", "import", "--all-platforms", p)
		if got := listed(); !slices.Equal(got, want) {
			t.Fatalf("ctr lists %v, want %v", got, want)
		}
		out := c.Must("run", "--rm", "--runc-root", filepath.Join(c.Dir, "runc"), testimages.MultiLayerName, "ml")
		if out != testimages.MultiLayerOutput+"\n" {
			t.Errorf("the unpacked multilayer image printed %q", out)
		}
		out = c.Must("run", "--rm", "--runc-root", filepath.Join(c.Dir, "runc"), "docker.io/berth/from-docker:v1", "bb", "echo", "ok")
		if out != "ok\n" {
			t.Errorf("the unpacked docker image printed %q", out)
		}
	})

	t.Run("berth imports ctr's export", func(t *testing.T) {
		out := filepath.Join(c.Dir, "from-ctr.tar")
		c.Must("images", "export", "--all-platforms", out, testimages.MultiPlatformName, testimages.MultiLayerName)
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
