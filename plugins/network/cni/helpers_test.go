package cni

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/internal/testutil/require"
)

// needs skips (or, under CI, fails) a test lacking root, the CNI plugins,
// iptables or busybox.
func needs(t testing.TB) {
	t.Helper()
	require.Root(t)
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			require.Missing(t, "CNI plugin "+p+" in /usr/lib/cni (apt-get install containernetworking-plugins)")
		}
	}
	require.Binary(t, "iptables")
	require.Binary(t, "ip")
	require.Binary(t, "nsenter")
	require.Binary(t, "busybox")
}

func nsCtx() context.Context {
	return namespaces.WithNamespace(context.Background(), "test")
}

type testEnv struct {
	t     testing.TB
	m     *Manager
	cfg   Config
	state string
	// grace is the managers' dropGrace: none unless a test asks, so a
	// network's rules go with its last attachment and tests can count
	// them right after.
	grace time.Duration
}

type envOpt func(*Config)

// newEnv starts a Manager on temporary folders, with no default network
// unless an option asks for one. Everything it made is removed at the
// end of the test.
func newEnv(t testing.TB, opts ...envOpt) *testEnv {
	t.Helper()
	needs(t)
	cfg := *DefaultConfig()
	cfg.ConfDir = t.TempDir()
	cfg.DefaultNetwork = ""
	cfg.BinDirs = []string{"/usr/lib/cni"}
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(rc, []byte("nameserver 127.0.0.1\nsearch example.test\n"), 0o644)
	cfg.ResolvConf = rc
	for _, o := range opts {
		o(&cfg)
	}
	state, err := os.MkdirTemp("", "bn-")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, cfg: cfg, state: state}
	e.m = e.open()
	t.Cleanup(e.cleanup)
	return e
}

func (e *testEnv) open() *Manager {
	e.t.Helper()
	m, err := New(context.Background(), e.cfg, e.state)
	if err != nil {
		e.t.Fatal(err)
	}
	m.dropGrace = e.grace
	return m
}

// setGrace sets how long networks' rules outlive their last attachment,
// for this manager and those restart opens.
func (e *testEnv) setGrace(d time.Duration) {
	e.grace = d
	e.m.dropGrace = d
}

// restart closes the manager and opens a new one on the same folders, as
// a berthd restart does.
func (e *testEnv) restart() {
	e.t.Helper()
	e.m.Close()
	e.m = e.open()
}

func (e *testEnv) cleanup() {
	ctx := nsCtx()
	if e.m.store.db == nil {
		e.m = e.open()
	}
	sbs, _ := e.m.store.sandboxes("")
	for _, sb := range sbs {
		if err := e.m.RemoveSandbox(namespaces.WithNamespace(context.Background(), sb.Namespace), sb.ID); err != nil {
			e.t.Errorf("cleanup: remove sandbox %s: %v", sb.ID, err)
		}
	}
	atts, _ := e.m.Attachments(ctx, network.AttachmentFilter{})
	for _, a := range atts {
		if err := e.m.Detach(namespaces.WithNamespace(context.Background(), a.Namespace), a.ContainerID, a.Network); err != nil {
			e.t.Errorf("cleanup: detach %s: %v", a.ContainerID, err)
		}
	}
	nets, _ := e.m.Networks(ctx)
	for _, n := range nets {
		if n.Managed() {
			if err := e.m.removeNetworkLocked(n); err != nil && !n.Default {
				e.t.Errorf("cleanup: remove network %s: %v", n.Name, err)
			}
			if n.Default && n.Bridge != "" {
				deleteLink(n.Bridge)
				os.RemoveAll(filepath.Join(e.m.ipamDir(), n.Name))
			}
		}
	}
	e.m.Close()
	os.RemoveAll(e.state)
}

// randomSubnet returns a /24 in 10.200.0.0-10.249.255.0 that no host
// route or interface uses, so parallel tests do not collide.
func randomSubnet(t testing.TB) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + rand.IntN(50)), byte(rand.IntN(256)), 0}), 24)
		if conflict(p, nil, hostRoutes()) == nil {
			return p.String()
		}
	}
	t.Fatal("no free test subnet")
	return ""
}

func randomName(prefix string) string {
	return fmt.Sprintf("%s%08x", prefix, rand.Uint32())
}

func (e *testEnv) createNetwork(req network.CreateRequest) *network.Network {
	e.t.Helper()
	if req.Name == "" {
		req.Name = randomName("tn")
	}
	if req.Subnet == "" {
		req.Subnet = randomSubnet(e.t)
	}
	n, err := e.m.CreateNetwork(nsCtx(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *testEnv) sandbox(id string) *network.Sandbox {
	e.t.Helper()
	sb, err := e.m.CreateSandbox(nsCtx(), network.SandboxRequest{ID: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return sb
}

func (e *testEnv) attach(req network.AttachRequest) *network.Attachment {
	e.t.Helper()
	a, err := e.m.Attach(nsCtx(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// inNS runs a command in a network namespace.
func inNS(path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + path, "--"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func mustInNS(t testing.TB, path string, args ...string) string {
	t.Helper()
	out, err := inNS(path, args...)
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), path, err, out)
	}
	return out
}

// serveHTTP runs busybox httpd in a namespace, serving a file whose
// contents it returns.
func serveHTTP(t testing.TB, path string, port int) string {
	t.Helper()
	dir := t.TempDir()
	body := randomName("hello-")
	os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644)
	cmd := exec.Command("nsenter", "--net="+path, "--", "busybox", "httpd", "-f", "-p", fmt.Sprint(port), "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait until it listens.
	for i := 0; i < 100; i++ {
		if out, err := inNS(path, "busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil && strings.Contains(out, body) {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("httpd did not start")
	return ""
}
