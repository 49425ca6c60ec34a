package integration

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/daemon"
	"github.com/berthd/berth/internal/testutil/require"
)

// chainIDs are the snapshot names an unpack of img for the host makes,
// bottom first.
func chainIDs(t *testing.T, img *testimages.Image) []string {
	t.Helper()
	r, err := img.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range images.ChainIDs(r.Config.RootFS.DiffIDs) {
		out = append(out, c.String())
	}
	return out
}

func multiLayer(t *testing.T, opts ...testimages.Option) *testimages.Image {
	t.Helper()
	img, err := testimages.MultiLayer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// snapshotInfo is what `ctr snapshots info` and `berth snapshots info`
// print (ctr capitalises the keys; JSON decoding ignores the case).
type snapshotInfo struct {
	Kind   string
	Name   string
	Parent string
	Labels map[string]string
}

func decodeInfo(t *testing.T, out string) snapshotInfo {
	t.Helper()
	var i snapshotInfo
	if err := json.Unmarshal([]byte(out), &i); err != nil {
		t.Fatalf("snapshot info %q: %v", out, err)
	}
	return i
}

// manualGC keeps berthd from collecting on its own during a test, so
// snapshots made by hand (which nothing references) stay until the test
// runs `berth gc`, whatever the timing.
var manualGC = daemon.WithConfig("[plugins.\"io.containerd.metadata.v1.bolt\"]\ngc_delay = \"1h\"")

// mountTarget is a folder under the daemon's, where a mount left behind
// fails the test.
func mountTarget(t *testing.T, d *daemon.Daemon, name string) string {
	t.Helper()
	p := filepath.Join(d.Dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCtrImportUnpacksThroughSnapshotsAndDiff has Debian's ctr 1.6 import
// and unpack images (gzip, zstd and plain layers) client-side through
// berthd's snapshots and diff services, then drives the snapshots with ctr
// and berth alike.
func TestCtrImportUnpacksThroughSnapshotsAndDiff(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t, manualGC)
	dir := t.TempDir()
	imgs := map[string]*testimages.Image{
		"docker.io/library/ml-gzip:1": multiLayer(t, testimages.WithName("docker.io/library/ml-gzip:1")),
		"docker.io/library/ml-zstd:1": multiLayer(t, testimages.WithName("docker.io/library/ml-zstd:1"), testimages.WithCompression(testimages.Zstd)),
		"docker.io/library/ml-tar:1":  multiLayer(t, testimages.WithName("docker.io/library/ml-tar:1"), testimages.WithCompression(testimages.Uncompressed)),
	}
	for name, img := range imgs {
		out := d.MustCtr("images", "import", writeArchive(t, dir, img))
		if !strings.Contains(out, "unpacking "+name) || !strings.Contains(out, "done") {
			t.Fatalf("ctr images import of %s:\n%s", name, out)
		}
	}
	// The layers are the same once uncompressed: one chain of snapshots.
	chain := chainIDs(t, imgs["docker.io/library/ml-gzip:1"])
	top := chain[len(chain)-1]
	ls := d.MustCtr("snapshots", "ls")
	for _, c := range chain {
		if !strings.Contains(ls, c) {
			t.Errorf("ctr snapshots ls lacks %s:\n%s", c, ls)
		}
	}
	if strings.Contains(ls, "extract-") || strings.Contains(ls, "Active") {
		t.Errorf("extraction snapshots left:\n%s", ls)
	}
	if bls := d.MustBerth("snapshots", "ls", "-q"); len(strings.Fields(bls)) != len(chain) {
		t.Errorf("berth snapshots ls -q lists %q, want the %d chain IDs", bls, len(chain))
	}
	checkTree(t, d.MustCtr("snapshots", "tree"), chain)
	checkTree(t, d.MustBerth("snapshots", "tree"), chain)

	for _, out := range []string{d.MustCtr("snapshots", "info", top), d.MustBerth("snapshots", "info", top)} {
		info := decodeInfo(t, out)
		if info.Kind != "Committed" || info.Name != top || info.Parent != chain[len(chain)-2] {
			t.Errorf("snapshot info %+v, want committed %s on %s", info, top, chain[len(chain)-2])
		}
	}
	if u := d.MustCtr("snapshots", "usage", top); !strings.Contains(u, top) {
		t.Errorf("ctr snapshots usage:\n%s", u)
	}
	if u := d.MustBerth("snapshots", "usage", "--format", "json"); !strings.Contains(u, `"inodes"`) || !strings.Contains(u, top) {
		t.Errorf("berth snapshots usage:\n%s", u)
	}

	// The config blob is labelled with the top snapshot: unpacked.
	r, err := imgs["docker.io/library/ml-gzip:1"].Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	if cls := d.MustCtr("content", "ls"); !strings.Contains(cls, "containerd.io/gc.ref.snapshot.overlayfs="+top) ||
		!strings.Contains(cls, "containerd.io/uncompressed="+r.Config.RootFS.DiffIDs[0].String()) {
		t.Errorf("ctr content ls lacks the unpack labels:\n%s", cls)
	}

	for name := range imgs {
		target := mountTarget(t, d, "mnt-"+strings.Split(strings.TrimPrefix(name, "docker.io/library/"), ":")[0])
		d.MustCtr("images", "mount", name, target)
		err := testimages.MultiLayerExpected().Check(target)
		d.MustCtr("images", "unmount", "--rm", target)
		if err != nil {
			t.Errorf("%s mounted by ctr: %v", name, err)
		}
	}

	// A docker save archive (uncompressed layer.tar) in a namespace of its
	// own, so that its layer is extracted there rather than found.
	bb := busybox(t)
	d.MustCtr("-n", "docker", "images", "import", writeDockerArchive(t, dir, bb))
	target := mountTarget(t, d, "mnt-docker")
	d.MustCtr("-n", "docker", "images", "mount", bb.Name, target)
	err = testimages.BusyboxExpected().Check(target)
	d.MustCtr("-n", "docker", "images", "unmount", "--rm", target)
	if err != nil {
		t.Errorf("docker archive mounted by ctr: %v", err)
	}

	ctrSnapshotCommands(t, d, top)
	berthSnapshotCommands(t, d, top)
	keys := strings.Fields(d.MustBerth("snapshots", "ls", "-q"))
	if want := append([]string{"b-done"}, chain...); strings.Join(keys, " ") != strings.Join(sorted(want), " ") {
		t.Errorf("snapshots after the commands: %v, want %v", keys, sorted(want))
	}
}

// checkTree checks that a tree printout (ctr's layout, which berth
// follows) nests chain in order.
func checkTree(t *testing.T, out string, chain []string) {
	t.Helper()
	var want strings.Builder
	for i, c := range chain {
		prefix := strings.Repeat("  ", i)
		if i > 0 {
			prefix += `\_`
		}
		want.WriteString(prefix + " " + c + "\n")
	}
	if out != want.String() {
		t.Errorf("tree:\n%s\nwant:\n%s", out, want.String())
	}
}

// ctrSnapshotCommands prepares, diffs, commits and removes snapshots with
// ctr on top of the image's top layer.
func ctrSnapshotCommands(t *testing.T, d *daemon.Daemon, top string) {
	t.Helper()
	d.MustCtr("snapshots", "prepare", "ctr-work", top)
	mounts := d.MustCtr("snapshots", "mounts", "/target", "ctr-work")
	if !strings.HasPrefix(mounts, "mount -t overlay overlay /target -o ") || !strings.Contains(mounts, "upperdir=") {
		t.Fatalf("ctr snapshots mounts:\n%s", mounts)
	}
	// Write into the snapshot through its upper directory.
	upper := ""
	for _, o := range strings.Split(strings.Fields(mounts)[len(strings.Fields(mounts))-1], ",") {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		}
	}
	if err := os.WriteFile(filepath.Join(upper, "added.txt"), []byte("from ctr"), 0o644); err != nil {
		t.Fatal(err)
	}
	layer := d.MustCtr("snapshots", "diff", "--media-type", ocispec.MediaTypeImageLayer, "ctr-work")
	names := tarNames(t, layer)
	if len(names) != 1 || names[0] != "added.txt" {
		t.Errorf("ctr snapshots diff layer holds %v, want only added.txt", names)
	}
	d.MustCtr("snapshots", "commit", "ctr-done", "ctr-work")
	d.MustCtr("snapshots", "view", "ctr-view", "ctr-done")
	if r := d.Ctr("snapshots", "rm", "ctr-done"); r.ExitCode == 0 {
		t.Error("ctr removed a snapshot that has a view on it")
	}
	d.MustCtr("snapshots", "rm", "ctr-view")
	d.MustCtr("snapshots", "rm", "ctr-done")
}

// berthSnapshotCommands does the same with berth and leaves one committed
// snapshot with a label.
func berthSnapshotCommands(t *testing.T, d *daemon.Daemon, top string) {
	t.Helper()
	out := d.MustBerth("snapshots", "prepare", "--target", "/t", "-l", "purpose=test", "b-work", top)
	if !strings.HasPrefix(out, "mount -t overlay overlay /t -o ") {
		t.Errorf("berth snapshots prepare --target:\n%s", out)
	}
	if m := d.MustBerth("snapshots", "mounts", "/t", "b-work"); m != out {
		t.Errorf("berth snapshots mounts %q differs from prepare's %q", m, out)
	}
	d.MustBerth("snapshots", "commit", "-l", "kept=yes", "b-done", "b-work")
	d.MustBerth("snapshots", "label", "b-done", "color=blue")
	labels := d.MustBerth("snapshots", "label", "b-done")
	if !strings.Contains(labels, "color=blue") || !strings.Contains(labels, "kept=yes") {
		t.Errorf("berth snapshots label printed:\n%s", labels)
	}
	if ls := d.MustCtr("snapshots", "ls"); !strings.Contains(ls, "b-done") || strings.Contains(ls, "b-work") {
		t.Errorf("ctr does not see berth's commit:\n%s", ls)
	}
	d.MustBerth("snapshots", "view", "b-view", "b-done")
	if r := d.Berth("snapshots", "rm", "b-done"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "children") {
		t.Errorf("berth removed a snapshot with a view on it: %+v", r)
	}
	d.MustBerth("snapshots", "rm", "b-view")
	if r := d.Berth("snapshots", "info", "nope"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("berth snapshots info of an unknown key: %+v", r)
	}
	if r := d.Berth("snapshots", "--snapshotter", "nope", "ls"); r.ExitCode == 0 || !strings.Contains(r.Stderr, `"nope"`) {
		t.Errorf("berth snapshots on an unknown snapshotter: %+v", r)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func tarNames(t *testing.T, data string) []string {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(data))
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatalf("diff is not a tar: %v", err)
		}
		names = append(names, h.Name)
	}
}

// TestBerthImportUnpacksByDefault checks the server-side unpack of berth
// images import, berth images unpack into another snapshotter, that ctr
// sees the image unpacked, and that the snapshots go with the image.
func TestBerthImportUnpacksByDefault(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	dir := t.TempDir()
	ml := multiLayer(t, testimages.WithName("docker.io/library/ml:1"))
	bb := busybox(t)
	d.MustBerth("images", "import", writeArchive(t, dir, ml, bb))
	chain := chainIDs(t, ml)
	ls := d.MustBerth("snapshots", "ls", "-q")
	if n := len(strings.Fields(ls)); n != len(chain) {
		t.Fatalf("%d snapshots after import, want %d (busybox shares the base layer):\n%s", n, len(chain), ls)
	}
	if inspect := d.MustBerth("images", "inspect", "docker.io/library/ml:1"); !strings.Contains(inspect, "overlayfs") {
		t.Errorf("image not reported unpacked into overlayfs:\n%s", inspect)
	}
	// ctr finds the image unpacked and mounts it without extracting.
	target := mountTarget(t, d, "mnt")
	d.MustCtr("images", "mount", "docker.io/library/ml:1", target)
	err := testimages.MultiLayerExpected().Check(target)
	d.MustCtr("images", "unmount", "--rm", target)
	if err != nil {
		t.Fatal(err)
	}

	out := d.MustBerth("images", "unpack", "--snapshotter", "native", "docker.io/library/ml:1")
	if !strings.Contains(out, "native") || !strings.Contains(out, chain[len(chain)-1]) {
		t.Errorf("berth images unpack printed %q", out)
	}
	if n := len(strings.Fields(d.MustBerth("snapshots", "--snapshotter", "native", "ls", "-q"))); n != len(chain) {
		t.Errorf("%d native snapshots, want %d", n, len(chain))
	}

	d.MustBerth("images", "rm", "docker.io/library/ml:1", "docker.io/library/busybox:latest")
	d.MustBerth("gc")
	for _, sn := range []string{"overlayfs", "native"} {
		if left := d.MustBerth("snapshots", "--snapshotter", sn, "ls", "-q"); strings.TrimSpace(left) != "" {
			t.Errorf("%s snapshots left after the images went:\n%s", sn, left)
		}
	}
	d.MustBerth("images", "import", "--no-unpack", writeArchive(t, dir, bb))
	if left := d.MustBerth("snapshots", "ls", "-q"); strings.TrimSpace(left) != "" {
		t.Errorf("--no-unpack unpacked:\n%s", left)
	}
}

// TestUnpackWrongDiffIDLeavesNoSnapshot imports an image whose config
// names a wrong diff ID for its third layer, with ctr and with berth: the
// unpack fails naming the layer and no snapshot of it or extraction
// snapshot remains.
func TestUnpackWrongDiffIDLeavesNoSnapshot(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	dir := t.TempDir()
	bad := withWrongDiffID(t, multiLayer(t, testimages.WithName("docker.io/library/bad:1")), 2)
	archive := writeArchive(t, dir, bad)

	r := d.Ctr("images", "import", archive)
	if r.ExitCode == 0 || !strings.Contains(r.Combined(), "wrong diff id") {
		t.Errorf("ctr import of a layer with a wrong diff ID: %+v", r)
	}
	r = d.Berth("-n", "other", "images", "import", archive)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "diff ID") {
		t.Errorf("berth import of a layer with a wrong diff ID: %+v", r)
	}
	// The layers below the bad one were committed under the unpack's
	// lease, which is gone: nothing keeps them, and nothing half-done is
	// left either.
	for _, ns := range []string{"default", "other"} {
		ls := d.MustBerth("-n", ns, "snapshots", "ls")
		if strings.Contains(ls, "extract-") || strings.Contains(ls, "Active") {
			t.Errorf("namespace %s: extraction snapshots left:\n%s", ns, ls)
		}
		d.MustBerth("-n", ns, "gc")
		if left := d.MustBerth("-n", ns, "snapshots", "ls", "-q"); strings.TrimSpace(left) != "" {
			t.Errorf("namespace %s: snapshots left after the failed unpack and a collection:\n%s", ns, left)
		}
	}
}

// withWrongDiffID returns img with layer i's diff ID replaced in a new
// config and manifest.
func withWrongDiffID(t *testing.T, img *testimages.Image, i int) *testimages.Image {
	t.Helper()
	var m ocispec.Manifest
	if err := json.Unmarshal(img.Blobs[img.Target.Digest], &m); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Blobs[m.Config.Digest], &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.RootFS.DiffIDs[i] = digest.FromString("not this layer")
	out := &testimages.Image{Name: img.Name, Blobs: map[digest.Digest][]byte{}}
	for d, b := range img.Blobs {
		if d != m.Config.Digest && d != img.Target.Digest {
			out.Blobs[d] = b
		}
	}
	add := func(mt string, v any) ocispec.Descriptor {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		desc := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
		out.Blobs[desc.Digest] = b
		return desc
	}
	m.Config = add(ocispec.MediaTypeImageConfig, cfg)
	out.Target = add(ocispec.MediaTypeImageManifest, m)
	out.Target.Platform = img.Target.Platform
	return out
}
