package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/daemon"
	"github.com/berthd/berth/internal/testutil/registry"
	"github.com/berthd/berth/internal/testutil/require"
)

// seedRegistry puts img at ref straight from its blobs, without berthd.
func seedRegistry(t *testing.T, img *testimages.Image, ref string) {
	t.Helper()
	src, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for d, b := range img.Blobs {
		desc := ocispec.Descriptor{Digest: d, Size: int64(len(b))}
		if err := content.WriteBlob(ctx, src, "seed-"+d.Encoded(), bytes.NewReader(b), desc); err != nil {
			t.Fatal(err)
		}
	}
	if err := remotes.NewResolver(remotes.Options{}).Push(ctx, ref, src, img.Target, remotes.PushOptions{}); err != nil {
		t.Fatalf("seed %s: %v", ref, err)
	}
}

// hostsDir writes <dir>/<host>/hosts.toml for each host and returns a
// daemon option pointing the transfer plugin at dir.
func hostsDir(t *testing.T, files map[string]string) (string, daemon.Option) {
	t.Helper()
	dir := t.TempDir()
	for host, body := range files {
		if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, daemon.WithConfig(fmt.Sprintf("[plugins.\"io.containerd.transfer.v1.local\"]\nconfig_path = %q", dir))
}

// cliEnv runs berth with its own credential files: berth's at
// home/berth.json, Docker's folder home/docker.
type cliEnv struct {
	t    *testing.T
	d    *daemon.Daemon
	home string
}

func newCLIEnv(t *testing.T, d *daemon.Daemon) *cliEnv {
	return &cliEnv{t: t, d: d, home: t.TempDir()}
}

func (c *cliEnv) run(stdin string, args ...string) *daemon.Result {
	c.t.Helper()
	cmd := c.d.BerthCommand(args...)
	cmd.Env = append(os.Environ(), "BERTH_CONFIG="+filepath.Join(c.home, "berth.json"), "DOCKER_CONFIG="+filepath.Join(c.home, "docker"), "HOME="+c.home)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := &daemon.Result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.ExitCode = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *cliEnv) must(stdin string, args ...string) string {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.ExitCode != 0 {
		c.t.Fatalf("berth %s: exit %d\n%s%s", strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// checkMounted mounts the image with ctr (which uses the snapshots the
// pull committed) and checks its files.
func checkMounted(t *testing.T, d *daemon.Daemon, name string, want testimages.Expectation) {
	t.Helper()
	target := mountTarget(t, d, fmt.Sprintf("mnt-%d", time.Now().UnixNano()))
	d.MustCtr("images", "mount", name, target)
	err := want.Check(target)
	d.MustCtr("images", "unmount", "--rm", target)
	if err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

// hasSnapshots reports whether every chain ID is a committed snapshot.
func hasSnapshots(t *testing.T, d *daemon.Daemon, chain []string) bool {
	t.Helper()
	ls := d.MustBerth("snapshots", "ls", "-q")
	for _, c := range chain {
		if !strings.Contains(ls, c) {
			return false
		}
	}
	return true
}

func TestRegistryPushPullRoundTrip(t *testing.T) {
	t.Parallel()
	require.Root(t)
	registry.Require(t)
	reg := registry.Start(t)
	d := daemon.Start(t)
	dir := t.TempDir()
	cases := []struct {
		name string
		img  *testimages.Image
		want testimages.Expectation
	}{
		{"single", busybox(t, testimages.WithName("docker.io/library/single:1")), testimages.BusyboxExpected()},
		{"multi", multiLayer(t, testimages.WithName("docker.io/library/multi:1")), testimages.MultiLayerExpected()},
		{"platforms", multiPlatform(t, testimages.WithName("docker.io/library/platforms:1")), testimages.BusyboxExpected()},
	}
	for _, c := range cases {
		d.MustBerth("load", "--no-unpack", "--all-platforms", "-i", writeArchive(t, dir, c.img))
		ref := reg.Host + "/" + c.name + ":1"
		d.MustBerth("tag", c.img.Name, ref)
		out := d.MustBerth("push", "--plain-http", ref)
		if !strings.Contains(out, c.img.Target.Digest.String()) {
			t.Errorf("push %s printed %q, want digest %s", ref, out, c.img.Target.Digest)
		}
		d.MustBerth("rmi", "--sync", ref, c.img.Name)
		if got := strings.TrimSpace(d.MustBerth("pull", "-q", ref)); got != c.img.Target.Digest.String() {
			t.Errorf("pull -q %s printed %q, want %s", ref, got, c.img.Target.Digest)
		}
		if !hasSnapshots(t, d, chainIDs(t, c.img)) {
			t.Errorf("pull of %s did not commit its snapshots", ref)
		}
		checkMounted(t, d, ref, c.want)
	}

	// One platform of the index: its marker file is unpacked.
	ref := reg.Host + "/platforms:1"
	r := d.Berth("pull", "--platform", "linux/arm64", ref)
	if r.ExitCode != 0 || !strings.Contains(r.Stderr, "extracting") || !strings.Contains(r.Stdout, "Digest: ") {
		t.Fatalf("pull --platform linux/arm64: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	info := d.MustBerth("images", "inspect", "--platform", "linux/arm64", ref)
	if !strings.Contains(info, "linux/arm64") {
		t.Errorf("inspect after an arm64 pull:\n%s", info)
	}
	// All platforms: every manifest's blobs are in the store.
	d.MustBerth("pull", "--all-platforms", ref)
	cls := d.MustBerth("content", "ls", "-q")
	for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		res, err := cases[2].img.Resolve(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Manifest.Layers {
			if !strings.Contains(cls, l.Digest.String()) {
				t.Errorf("--all-platforms did not pull %s layer %s", p, l.Digest)
			}
		}
	}
}

func multiPlatform(t *testing.T, opts ...testimages.Option) *testimages.Image {
	t.Helper()
	img, err := testimages.MultiPlatform(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestRegistryTLSAuthLoginPushPull(t *testing.T) {
	t.Parallel()
	require.Root(t)
	registry.Require(t)
	ca := registry.NewCA(t)
	basic := registry.Start(t, registry.WithTLS(), registry.WithCA(ca), registry.WithBasicAuth("alice", "wonderland"))
	bearer := registry.Start(t, registry.WithTLS(), registry.WithCA(ca), registry.WithTokenAuth("bob", "builder"))
	stranger := registry.Start(t, registry.WithTLS()) // its CA is not configured
	files := map[string]string{}
	for _, r := range []*registry.Registry{basic, bearer} {
		files[r.Host] = fmt.Sprintf("server = %q\nca = %q\n", r.URL(), ca.CertFile)
	}
	_, opt := hostsDir(t, files)
	d := daemon.Start(t, opt)
	cli := newCLIEnv(t, d)
	img := multiLayer(t, testimages.WithName("docker.io/library/secret:1"))
	d.MustBerth("load", "--no-unpack", "-i", writeArchive(t, t.TempDir(), img))

	for _, c := range []struct {
		reg        *registry.Registry
		user, pass string
	}{{basic, "alice", "wonderland"}, {bearer, "bob", "builder"}} {
		ref := c.reg.Host + "/team/secret:1"
		d.MustBerth("tag", img.Name, ref)

		// Anonymous push is refused, clearly.
		r := cli.run("", "push", ref)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "unauthorized") {
			t.Errorf("anonymous push to %s: exit %d, %s", c.reg.Host, r.ExitCode, r.Stderr)
		}
		// A wrong password fails login and stores nothing.
		r = cli.run("wrong", "login", "-u", c.user, "--password-stdin", c.reg.Host)
		t.Logf("login with a wrong password: %s", r.Stderr)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "unauthorized") || strings.Contains(r.Stderr, "wrong") {
			t.Errorf("login with a wrong password to %s: exit %d, %s", c.reg.Host, r.ExitCode, r.Stderr)
		}
		out := cli.must(c.pass+"\n", "login", "-u", c.user, "--password-stdin", c.reg.Host)
		if !strings.Contains(out, "Login Succeeded") {
			t.Errorf("login: %s", out)
		}
		cli.must("", "push", ref)
		d.MustBerth("rmi", "--sync", ref)
		if got := strings.TrimSpace(cli.must("", "pull", "-q", ref)); got != img.Target.Digest.String() {
			t.Errorf("pull -q %s: %q, want %s", ref, got, img.Target.Digest)
		}
		checkMounted(t, d, ref, testimages.MultiLayerExpected())
		if logs := d.Logs(); strings.Contains(logs, c.pass) {
			t.Errorf("berthd logged the password of %s", c.user)
		}
	}
	fi, err := os.Stat(filepath.Join(cli.home, "berth.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v, mode %v; want 0600", err, fi.Mode())
	}

	// A stored password that no longer works: pulls say unauthorized.
	cli.must("", "logout", basic.Host)
	r := cli.run("", "pull", basic.Host+"/team/secret:1")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "unauthorized") {
		t.Errorf("pull after logout: exit %d, %s", r.ExitCode, r.Stderr)
	}
	// Docker's config.json is read too.
	dockerAuth := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, basic.Host, "YWxpY2U6d29uZGVybGFuZA==") // alice:wonderland
	if err := os.MkdirAll(filepath.Join(cli.home, "docker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cli.home, "docker", "config.json"), []byte(dockerAuth), 0o600); err != nil {
		t.Fatal(err)
	}
	cli.must("", "pull", "-q", basic.Host+"/team/secret:1")

	// An unknown CA is an x509 error, never a fallback to plain HTTP.
	r = cli.run("", "pull", stranger.Host+"/x:1")
	t.Logf("pull from a registry with an unknown CA: %s", r.Stderr)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "x509") {
		t.Errorf("pull from a registry with an unknown CA: exit %d, %s", r.ExitCode, r.Stderr)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestRegistryMirrors(t *testing.T) {
	t.Parallel()
	require.Root(t)
	registry.Require(t)
	img := multiLayer(t)
	origin := registry.Start(t)
	seedRegistry(t, img, origin.Host+"/app:1")
	originProxy := registry.NewProxy(t, origin)
	mirror := registry.Start(t)
	seedRegistry(t, img, mirror.Host+"/app:1")
	mirrorProxy := registry.NewProxy(t, mirror)
	// Two origins behind two proxies of the same registry: one with a
	// mirror that is down, one with a mirror that serves.
	downOrigin := registry.NewProxy(t, origin)
	_, opt := hostsDir(t, map[string]string{
		downOrigin.Host:  fmt.Sprintf("[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+closedAddr(t)),
		originProxy.Host: fmt.Sprintf("[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+mirrorProxy.Host),
	})
	d := daemon.Start(t, opt)

	ref := downOrigin.Host + "/app:1"
	if got := strings.TrimSpace(d.MustBerth("pull", "-q", ref)); got != img.Target.Digest.String() {
		t.Errorf("pull with the mirror down: %q", got)
	}
	r, _ := img.Resolve("")
	for _, l := range r.Manifest.Layers {
		if blobGETs(downOrigin, l.Digest) != 1 {
			t.Errorf("origin served layer %s %d times with the mirror down, want 1", l.Digest, blobGETs(downOrigin, l.Digest))
		}
	}

	d.MustBerth("rmi", "--sync", ref)
	ref = originProxy.Host + "/app:1"
	if got := strings.TrimSpace(d.MustBerth("pull", "-q", ref)); got != img.Target.Digest.String() {
		t.Errorf("pull through the mirror: %q", got)
	}
	if n := len(originProxy.Requests()); n != 0 {
		t.Errorf("origin contacted %d times although the mirror served: %v", n, originProxy.Requests())
	}
	if len(mirrorProxy.Requests()) == 0 {
		t.Error("mirror never asked")
	}
	checkMounted(t, d, ref, testimages.MultiLayerExpected())
}

// blobGETs counts GETs of blob dg through a proxy.
func blobGETs(p *registry.Proxy, dg digest.Digest) int {
	return p.CountFunc(func(r registry.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/blobs/"+dg.String())
	})
}

func TestRegistryCutTransferAndCorruptBlob(t *testing.T) {
	t.Parallel()
	require.Root(t)
	registry.Require(t)
	img := multiLayer(t)
	reg := registry.Start(t)
	seedRegistry(t, img, reg.Host+"/app:1")
	proxy := registry.NewProxy(t, reg)
	d := daemon.Start(t)
	r, _ := img.Resolve("")
	chain := chainIDs(t, img)

	// Cut half way once: the pull resumes from the offset.
	cut := r.Manifest.Layers[0]
	proxy.CutOnce(cut.Digest.String())
	ref := proxy.Host + "/app:1"
	d.MustBerth("pull", ref)
	var ranges []string
	for _, q := range proxy.Requests() {
		if q.Method == http.MethodGet && strings.HasSuffix(q.Path, "/blobs/"+cut.Digest.String()) {
			ranges = append(ranges, q.Header.Get("Range"))
		}
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") || ranges[1] == "bytes=0-" {
		t.Errorf("cut layer requests had ranges %q, want a full GET then a resume from the offset", ranges)
	}
	checkMounted(t, d, ref, testimages.MultiLayerExpected())

	// A corrupted layer: the pull fails naming it, and leaves no record
	// and no snapshot of that layer.
	d.MustBerth("rmi", "--sync", ref)
	d.MustBerth("gc")
	bad := r.Manifest.Layers[2]
	proxy.Corrupt(bad.Digest.String())
	res := d.Berth("pull", ref)
	t.Logf("pull of a corrupted blob: %s", res.Stderr)
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, bad.Digest.String()) {
		t.Fatalf("pull of a corrupted blob: exit %d, %s", res.ExitCode, res.Stderr)
	}
	if ls := d.MustBerth("images", "-q"); strings.TrimSpace(ls) != "" {
		t.Errorf("image records after a failed pull: %q", ls)
	}
	if ls := d.MustBerth("snapshots", "ls", "-q"); strings.Contains(ls, chain[2]) {
		t.Errorf("snapshot of the corrupted layer committed: %s", ls)
	}
}

func TestRegistryConcurrentPullsFetchOnce(t *testing.T) {
	t.Parallel()
	require.Root(t)
	registry.Require(t)
	img := multiLayer(t)
	reg := registry.Start(t)
	seedRegistry(t, img, reg.Host+"/app:1")
	proxy := registry.NewProxy(t, reg)
	d := daemon.Start(t)
	ref := proxy.Host + "/app:1"

	const n = 5
	var wg sync.WaitGroup
	results := make([]*daemon.Result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = d.Berth("pull", "-q", ref)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != img.Target.Digest.String() {
			t.Errorf("pull %d: exit %d %q %s", i, r.ExitCode, r.Stdout, r.Stderr)
		}
	}
	res, _ := img.Resolve("")
	for _, b := range append(res.Manifest.Layers, res.Manifest.Config) {
		if got := blobGETs(proxy, b.Digest); got != 1 {
			t.Errorf("blob %s fetched %d times by %d concurrent pulls, want 1", b.Digest, got, n)
		}
	}
	if !hasSnapshots(t, d, chainIDs(t, img)) {
		t.Error("snapshots missing after the concurrent pulls")
	}
}

// TestCtrPullThroughBerthd has Debian's ctr 1.6 pull client-side: it
// fetches through berthd's content service and unpacks through its
// snapshots and diff services.
func TestCtrPullThroughBerthd(t *testing.T) {
	t.Parallel()
	require.Root(t)
	registry.Require(t)
	img := multiLayer(t)
	reg := registry.Start(t)
	seedRegistry(t, img, reg.Host+"/app:1")
	d := daemon.Start(t)
	ref := reg.Host + "/app:1"
	out := d.MustCtr("images", "pull", "--plain-http", ref)
	if !strings.Contains(out, "unpacking") || !strings.Contains(out, "done") {
		t.Errorf("ctr images pull:\n%s", out)
	}
	if ls := d.MustBerth("images", "--digests"); !strings.Contains(ls, img.Target.Digest.String()) {
		t.Errorf("berth images after ctr pull:\n%s", ls)
	}
	if !hasSnapshots(t, d, chainIDs(t, img)) {
		t.Error("ctr pull left no snapshots")
	}
	checkMounted(t, d, ref, testimages.MultiLayerExpected())
	var info struct{ Unpacked []string }
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(d.MustBerth("images", "inspect", ref)), &list); err != nil || len(list) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	if err := json.Unmarshal(list[0], &info); err != nil || len(info.Unpacked) == 0 {
		t.Errorf("berth inspect after ctr pull: unpacked %v (%v)", info.Unpacked, err)
	}
}
