package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/daemon"
	"github.com/berthd/berth/internal/testutil/require"
)

func busybox(t *testing.T, opts ...testimages.Option) *testimages.Image {
	t.Helper()
	img, err := testimages.Busybox(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func nsContext(ns string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "containerd-namespace", ns)
}

// contentDigests lists the blobs of a namespace.
func contentDigests(t *testing.T, d *daemon.Daemon, ns string) []string {
	t.Helper()
	out := d.MustBerth("-n", ns, "content", "ls", "-q")
	return strings.Fields(out)
}

func TestImportListInspectTagExportThroughBerth(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	dir := t.TempDir()
	bb := busybox(t)
	ml, err := testimages.MultiLayer(testimages.WithName("docker.io/library/multi:1"))
	if err != nil {
		t.Fatal(err)
	}
	out := d.MustBerth("images", "import", "--no-unpack", writeArchive(t, dir, bb, ml))
	if !strings.Contains(out, "docker.io/library/busybox:latest") || !strings.Contains(out, "docker.io/library/multi:1") {
		t.Fatalf("import output:\n%s", out)
	}
	ls := d.MustBerth("images")
	for _, want := range []string{"REPOSITORY", "busybox", "latest", "multi", "1"} {
		if !strings.Contains(ls, want) {
			t.Errorf("berth images lacks %q:\n%s", want, ls)
		}
	}
	var rows []struct {
		Name   string
		ID     string
		Digest string
		Size   int64
	}
	if err := json.Unmarshal([]byte(d.MustBerth("images", "ls", "--format", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("rows %+v", rows)
	}
	for _, r := range rows {
		if r.Size <= 0 || len(r.ID) != 12 {
			t.Errorf("row %+v: size and 12-character id expected", r)
		}
		if r.Name == bb.Name && r.Digest != bb.Target.Digest.String() {
			t.Errorf("busybox digest %s, want %s", r.Digest, bb.Target.Digest)
		}
	}

	var inspect []struct {
		Name   string
		Digest string
		Config json.RawMessage
	}
	if err := json.Unmarshal([]byte(d.MustBerth("images", "inspect", "multi:1")), &inspect); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	json.Unmarshal(inspect[0].Config, &cfg)
	if len(cfg.RootFS.DiffIDs) != 4 || cfg.Config.User == "" {
		t.Errorf("inspect config: %+v", cfg)
	}

	d.MustBerth("tag", "busybox", "mybox:v2")
	if ls := d.MustBerth("images", "-q"); strings.Count(ls, "\n") != 3 {
		t.Errorf("after tag:\n%s", ls)
	}

	exported := filepath.Join(dir, "out.tar")
	d.MustBerth("save", "-o", exported, "mybox:v2", "multi:1")
	if err := func() error {
		f, err := os.Open(exported)
		if err != nil {
			return err
		}
		defer f.Close()
		return testimages.ValidateArchive(f)
	}(); err != nil {
		t.Fatalf("exported archive is invalid: %v", err)
	}
	// Re-import into another namespace: same digests.
	d.MustBerth("-n", "other", "load", "--no-unpack", exported)
	other := d.MustBerth("-n", "other", "images", "--digests")
	if !strings.Contains(other, bb.Target.Digest.String()) || !strings.Contains(other, "mybox") {
		t.Errorf("re-imported images:\n%s", other)
	}
}

func TestImportDockerArchiveAndPlatforms(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	dir := t.TempDir()
	d.MustBerth("images", "import", "--no-unpack", writeDockerArchive(t, dir, busybox(t, testimages.WithName("docker.io/library/dbox:1"))))
	if ls := d.MustBerth("images"); !strings.Contains(ls, "dbox") {
		t.Errorf("docker archive not imported:\n%s", ls)
	}
	mp, err := testimages.MultiPlatform(testimages.WithName("docker.io/library/mp:1"))
	if err != nil {
		t.Fatal(err)
	}
	path := writeArchive(t, dir, mp)
	d.MustBerth("-n", "current", "images", "import", "--no-unpack", path)
	d.MustBerth("-n", "all", "images", "import", "--no-unpack", "--all-platforms", path)
	// The archive's other platforms' blobs were read too; collection
	// removes what the current-platform image does not reference.
	d.MustBerth("gc")
	cur, all := len(contentDigests(t, d, "current")), len(contentDigests(t, d, "all"))
	if cur >= all {
		t.Errorf("current-platform import holds %d blobs, all-platform %d: want fewer", cur, all)
	}
	var rows []struct{ Platforms []string }
	json.Unmarshal([]byte(d.MustBerth("-n", "all", "images", "--format", "json")), &rows)
	if len(rows) != 1 || len(rows[0].Platforms) != 3 {
		t.Errorf("platforms of the multi-platform image: %+v", rows)
	}
}

func TestCtrImagesContentAndLeases(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	dir := t.TempDir()
	bb := busybox(t)
	d.MustCtr("images", "import", "--no-unpack", writeArchive(t, dir, bb))
	ls := d.MustCtr("images", "ls")
	if !strings.Contains(ls, "docker.io/library/busybox:latest") || !strings.Contains(ls, bb.Target.Digest.String()) {
		t.Fatalf("ctr images ls:\n%s", ls)
	}
	// berth sees what ctr imported, and the reverse.
	if !strings.Contains(d.MustBerth("images"), "busybox") {
		t.Error("berth does not list the image ctr imported")
	}
	d.MustBerth("tag", "busybox", "copy:1")
	if !strings.Contains(d.MustCtr("images", "ls", "-q"), "docker.io/library/copy:1") {
		t.Error("ctr does not list the image berth tagged")
	}

	content := d.MustCtr("content", "ls")
	for dg := range bb.Blobs {
		if !strings.Contains(content, dg.String()) {
			t.Errorf("ctr content ls lacks %s", dg)
		}
	}
	got := d.MustCtr("content", "get", bb.Target.Digest.String())
	if digest.FromString(got) != bb.Target.Digest {
		t.Errorf("ctr content get returned other bytes")
	}
	if got2 := d.MustBerth("content", "get", bb.Target.Digest.String()); got2 != got {
		t.Error("berth content get differs from ctr's")
	}

	exported := filepath.Join(dir, "ctr-export.tar")
	d.MustCtr("images", "export", exported, "docker.io/library/busybox:latest")
	d.MustBerth("-n", "fromctr", "images", "import", "--no-unpack", exported)
	if !strings.Contains(d.MustBerth("-n", "fromctr", "images", "--digests"), bb.Target.Digest.String()) {
		t.Error("berth does not import what ctr exported")
	}

	id := strings.TrimSpace(d.MustCtr("leases", "create", "--id", "held"))
	if id != "held" {
		t.Errorf("ctr leases create printed %q", id)
	}
	if !strings.Contains(d.MustCtr("leases", "ls"), "held") || !strings.Contains(d.MustBerth("leases", "ls"), "held") {
		t.Error("lease not listed")
	}
	d.MustCtr("leases", "rm", "held")
	if strings.Contains(d.MustBerth("leases", "ls", "-q"), "held") {
		t.Error("lease still listed after ctr leases rm")
	}

	d.MustCtr("images", "rm", "docker.io/library/busybox:latest", "docker.io/library/copy:1")
	if ls := d.MustCtr("images", "ls", "-q"); strings.TrimSpace(ls) != "" {
		t.Errorf("images left: %s", ls)
	}
	d.MustBerth("gc")
	if left := contentDigests(t, d, "default"); len(left) != 0 {
		t.Errorf("blobs left after removing every image and collecting: %v", left)
	}
}

// badArchives are archives berth must refuse, each with the text its error
// must contain.
func badArchives(t *testing.T, dir string) map[string]struct{ path, want string } {
	t.Helper()
	bb := busybox(t)
	good := writeArchive(t, dir, bb)
	raw, _ := os.ReadFile(good)
	out := map[string]struct{ path, want string }{}

	out["truncated"] = struct{ path, want string }{saveBytes(t, dir, "trunc.tar", raw[:len(raw)/2]), "truncated"}

	e := readTar(t, good)
	for name, b := range e {
		if strings.HasPrefix(name, "blobs/") && len(b) > 1000 {
			c := append([]byte(nil), b...)
			c[len(c)/2] ^= 0xff
			e[name] = c
			break
		}
	}
	out["blob mismatch"] = struct{ path, want string }{e.write(t, dir, "mismatch.tar"), "digest"}

	e = readTar(t, good)
	big := e.addBlob(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"x":"`+strings.Repeat("a", 5<<20)+`"}`))
	e.setIndex("docker.io/library/big:1", big)
	out["oversized manifest"] = struct{ path, want string }{e.write(t, dir, "big.tar"), "4194304"}

	e = readTar(t, good)
	cfg := e.addBlob(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:`+strings.Repeat("0", 64)+`"]}}`))
	layer := e.addBlob("application/x-unknown-layer", []byte("not a tar"))
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	e.setIndex("docker.io/library/odd:1", e.addBlob(ocispec.MediaTypeImageManifest, mb))
	out["unknown media type"] = struct{ path, want string }{e.write(t, dir, "odd.tar"), "application/x-unknown-layer"}

	e = readTar(t, good)
	e["../escape"] = []byte("x")
	out["dot-dot entry"] = struct{ path, want string }{e.write(t, dir, "dotdot.tar"), "../escape"}

	e = readTar(t, good)
	for name := range e {
		if strings.HasPrefix(name, "blobs/") && name != blobPath(bb.Target.Digest) {
			delete(e, name)
			break
		}
	}
	out["missing blob"] = struct{ path, want string }{e.write(t, dir, "missing.tar"), "sha256:"}
	return out
}

func TestImportBadArchivesLeaveNothing(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	dir := t.TempDir()
	i := 0
	for name, c := range badArchives(t, dir) {
		// A namespace per case: a blob another case left in the store
		// would make an archive lacking it complete.
		i++
		ns := fmt.Sprintf("bad%d", i)
		t.Run(name, func(t *testing.T) {
			r := d.Berth("-n", ns, "images", "import", c.path)
			if r.ExitCode == 0 {
				t.Fatalf("import of a %s archive succeeded", name)
			}
			if !strings.Contains(r.Stderr, c.want) {
				t.Errorf("error %q does not name the problem (%q)", strings.TrimSpace(r.Stderr), c.want)
			}
			if ls := d.MustBerth("-n", ns, "images", "-q"); strings.TrimSpace(ls) != "" {
				t.Errorf("image records left: %q", ls)
			}
			if st := d.MustBerth("-n", ns, "leases", "ls", "-q"); strings.TrimSpace(st) != "" {
				t.Errorf("leases left: %q", st)
			}
		})
	}
	d.MustBerth("gc")
	for j := 1; j <= i; j++ {
		if left := contentDigests(t, d, fmt.Sprintf("bad%d", j)); len(left) != 0 {
			t.Errorf("bad%d: blobs left by a failed import after GC: %v", j, left)
		}
	}
}

func TestContentWriteStreamErrors(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	client := contentapi.NewContentClient(d.Conn())
	// A committed blob with neither lease nor reference may be collected by
	// any GC pass (the failed commits below schedule one), so hold a lease.
	d.MustBerth("leases", "create", "--id", "write-errors")
	ctx := metadata.AppendToOutgoingContext(nsContext("default"), "containerd-lease", "write-errors")
	data := []byte("hello berth content")
	dg := digest.FromBytes(data)

	write := func(ref string, total int64, expected digest.Digest, data []byte) error {
		stream, err := client.Write(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Ref: ref, Total: total, Expected: expected.String(), Data: data}); err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	if err := write("wrong-size", int64(len(data))+5, dg, data); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("wrong expected size: %v", err)
	}
	if err := write("wrong-digest", int64(len(data)), digest.FromString("other"), data); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("wrong expected digest: %v", err)
	}
	if _, err := client.Info(ctx, &contentapi.InfoRequest{Digest: dg.String()}); status.Code(err) != codes.NotFound {
		t.Errorf("a failed commit stored the blob: %v", err)
	}

	// Two writers on one ref: the second is refused while the first works.
	first, err := client.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Ref: "shared", Data: data[:5]})
	if _, err := first.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := write("shared", int64(len(data)), dg, data); status.Code(err) != codes.Unavailable && status.Code(err) != codes.AlreadyExists {
		t.Errorf("second writer on a held ref: %v", err)
	}
	first.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Offset: 5, Data: data[5:], Total: int64(len(data)), Expected: dg.String()})
	if resp, err := first.Recv(); err != nil || resp.Digest != dg.String() {
		t.Fatalf("first writer's commit: %v %v", resp, err)
	}
	first.CloseSend()
	info, err := client.Info(ctx, &contentapi.InfoRequest{Digest: dg.String()})
	if err != nil || info.Info.Size != int64(len(data)) {
		t.Errorf("committed blob: %v %v", info, err)
	}
	// Reads at an offset.
	rs, err := client.Read(ctx, &contentapi.ReadContentRequest{Digest: dg.String(), Offset: 6, Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		resp, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.Data...)
	}
	if string(got) != "berth" {
		t.Errorf("read at offset 6 size 5 = %q", got)
	}
}

func TestGCKeepsReferencedAndLeasedAcrossRestart(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	dir := t.TempDir()
	bb := busybox(t)
	d.MustBerth("images", "import", "--no-unpack", writeArchive(t, dir, bb))
	client := contentapi.NewContentClient(d.Conn())
	put := func(ctx context.Context, s string, labels map[string]string) digest.Digest {
		dg := digest.FromString(s)
		stream, err := client.Write(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Ref: "ref-" + dg.Encoded()[:8], Total: int64(len(s)), Expected: dg.String(), Data: []byte(s), Labels: labels})
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		return dg
	}
	d.MustBerth("leases", "create", "--id", "keep")
	leased := put(metadata.AppendToOutgoingContext(nsContext("default"), "containerd-lease", "keep"), "leased blob", nil)
	// A blob with neither lease nor reference may be collected at once, so
	// the root label comes with the commit.
	rooted := put(nsContext("default"), "rooted blob", map[string]string{"containerd.io/gc.root": time.Now().Format(time.RFC3339)})
	d.MustBerth("content", "label", rooted.String(), "purpose=test")
	loose := put(nsContext("default"), "loose blob", nil)

	d.Restart()
	d.MustBerth("gc", "-v")
	have := strings.Join(contentDigests(t, d, "default"), " ")
	for dg := range bb.Blobs {
		if !strings.Contains(have, dg.String()) {
			t.Errorf("GC removed %s of the image", dg)
		}
	}
	for _, dg := range []digest.Digest{leased, rooted} {
		if !strings.Contains(have, dg.String()) {
			t.Errorf("GC removed protected blob %s", dg)
		}
	}
	if strings.Contains(have, loose.String()) {
		t.Error("GC kept the unreferenced blob")
	}
	d.MustBerth("leases", "rm", "--sync", "keep")
	if strings.Contains(strings.Join(contentDigests(t, d, "default"), " "), leased.String()) {
		t.Error("blob of a deleted lease survived a synchronous lease delete")
	}
	d.MustBerth("rmi", "--sync", "busybox")
	left := contentDigests(t, d, "default")
	if len(left) != 1 || left[0] != rooted.String() {
		t.Errorf("after removing the image: %v, want only %s", left, rooted)
	}
}

func TestNamespaceWithImagesCannotBeRemoved(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	d.MustBerth("-n", "full", "images", "import", "--no-unpack", writeArchive(t, t.TempDir(), busybox(t)))
	r := d.Berth("namespaces", "rm", "full")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "must be empty") || !strings.Contains(r.Stderr, "images") {
		t.Errorf("removing a namespace holding an image: %+v", r)
	}
	if r := d.Ctr("namespaces", "rm", "full"); r.ExitCode == 0 {
		t.Errorf("ctr removed a namespace holding an image")
	}
}

// TestImportSurvivesKill kills berthd at several points of an import and
// checks, after a restart, that every image's blobs exist and verify and
// that GC removes the leftovers.
func TestImportSurvivesKill(t *testing.T) {
	t.Parallel()
	require.Root(t)
	d := daemon.Start(t)
	dir := t.TempDir()
	spec := testimages.BenchSpec{Name: "docker.io/library/crash:1", Layers: 4, Size: 24 << 20, Seed: 7}
	layout := filepath.Join(dir, "layout")
	if _, err := testimages.GenerateBench(layout, spec); err != nil {
		t.Fatal(err)
	}
	archivePath := filepath.Join(dir, "crash.tar")
	if err := testimages.SaveFile(archivePath, func(w io.Writer) error { return testimages.WriteLayoutArchive(w, layout) }); err != nil {
		t.Fatal(err)
	}
	for i, delay := range []time.Duration{20 * time.Millisecond, 80 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond} {
		ns := fmt.Sprintf("crash%d", i)
		cmd := d.BerthCommand("-n", ns, "images", "import", "--no-unpack", archivePath)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		d.Kill()
		cmd.Wait()
		d.Restart()
		checkStoreConsistent(t, d, ns)
	}
	// After a final collection nothing unreferenced is left anywhere.
	d.MustBerth("gc")
	for i := range 4 {
		ns := fmt.Sprintf("crash%d", i)
		if len(strings.Fields(d.MustBerth("-n", ns, "images", "-q"))) == 0 && len(contentDigests(t, d, ns)) != 0 {
			t.Errorf("%s: blobs left with no image after GC: %v", ns, contentDigests(t, d, ns))
		}
	}
}

// checkStoreConsistent verifies every blob of every image of ns.
func checkStoreConsistent(t *testing.T, d *daemon.Daemon, ns string) {
	t.Helper()
	var rows []struct {
		Name  string
		Error string
	}
	json.Unmarshal([]byte(d.MustBerth("-n", ns, "images", "--format", "json")), &rows)
	for _, r := range rows {
		if r.Error != "" {
			t.Errorf("%s: image %s is broken after the crash: %s", ns, r.Name, r.Error)
		}
	}
	client := contentapi.NewContentClient(d.Conn())
	for _, dg := range contentDigests(t, d, ns) {
		rs, err := client.Read(nsContext(ns), &contentapi.ReadContentRequest{Digest: dg})
		if err != nil {
			t.Fatal(err)
		}
		v := digest.Digest(dg).Verifier()
		for {
			resp, err := rs.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: read %s: %v", ns, dg, err)
			}
			v.Write(resp.Data)
		}
		if !v.Verified() {
			t.Errorf("%s: blob %s does not match its digest after the crash", ns, dg)
		}
	}
}
