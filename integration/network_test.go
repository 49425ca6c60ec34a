package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/berthd/berth/core/netns"
	"github.com/berthd/berth/internal/testutil/daemon"
	"github.com/berthd/berth/internal/testutil/require"
	networksapi "github.com/berthd/berth/proto/berth/networks/v1"
)

func needNetworking(t *testing.T) {
	t.Helper()
	require.Root(t)
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			require.Missing(t, "CNI plugin "+p+" (apt-get install containernetworking-plugins)")
		}
	}
	require.Binary(t, "iptables")
	require.Binary(t, "nsenter")
	require.Binary(t, "busybox")
}

// testSubnet is a random /24 in 10.100.0.0-10.149.255.0, away from the
// ranges the harness and the unit tests use.
func testSubnet() string {
	return fmt.Sprintf("10.%d.%d.0/24", 100+rand.IntN(50), rand.IntN(256))
}

type cliNetwork struct {
	ID      string
	Name    string
	Driver  string
	Source  string
	Default bool
	DNS     bool
	Labels  map[string]string
	Subnets []struct{ Subnet, Gateway string }
	// Inspect only.
	Containers []struct {
		Namespace, ID, Name, Interface string
		Addresses, Ports               []string
	}
}

func networkJSON(t *testing.T, d *daemon.Daemon, args ...string) []cliNetwork {
	t.Helper()
	var out []cliNetwork
	if err := json.Unmarshal([]byte(d.MustBerth(args...)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNetworkCLI(t *testing.T) {
	needNetworking(t)
	t.Parallel()
	d := daemon.Start(t)

	ls := networkJSON(t, d, "network", "ls", "--format", "json")
	if len(ls) != 1 || ls[0].Name != "berth" || !ls[0].Default || ls[0].Source != "berth" || ls[0].Driver != "bridge" {
		t.Fatalf("a new berthd's networks: %+v", ls)
	}

	subnet := testSubnet()
	id := strings.TrimSpace(d.MustBerth("network", "create", "--subnet", subnet, "--label", "team=web", "front"))
	if len(id) != 64 {
		t.Errorf("create printed %q, want the network ID", id)
	}
	d.MustBerth("network", "create", "--internal", "-o", "mtu=1400", "back")
	table := d.MustBerth("network", "ls")
	for _, want := range []string{"NETWORK ID", "NAME", "DRIVER", "SUBNET", "SOURCE", id[:12], "front", subnet, "back", "berth"} {
		if !strings.Contains(table, want) {
			t.Errorf("network ls lacks %q:\n%s", want, table)
		}
	}
	if q := d.MustBerth("network", "ls", "-q", "--filter", "label=team=web"); strings.TrimSpace(q) != id[:12] {
		t.Errorf("ls -q --filter label=team=web: %q", q)
	}
	if names := d.MustBerth("network", "ls", "--format", "{{.Name}}", "-f", "name=ck"); strings.TrimSpace(names) != "back" {
		t.Errorf("ls --filter name=ck: %q", names)
	}

	in := networkJSON(t, d, "network", "inspect", "front")
	if len(in) != 1 || in[0].ID != id || in[0].Subnets[0].Subnet != subnet || !in[0].DNS || in[0].Labels["team"] != "web" || in[0].Containers == nil {
		t.Errorf("inspect front: %+v", in)
	}
	if got := d.MustBerth("network", "inspect", "--format", "{{.Driver}} {{.Internal}}", "back"); got != "bridge true\n" {
		t.Errorf("inspect --format: %q", got)
	}
	if got := d.MustBerth("network", "inspect", "--format", "{{.Name}}", id[:10]); got != "front\n" {
		t.Errorf("inspect by ID prefix: %q", got)
	}

	// A CNI configuration a user drops in is a network too.
	extName := "ext" + fmt.Sprint(rand.Uint32())
	extFile := filepath.Join(d.CNIConfDir, "90-ext.conflist")
	os.WriteFile(extFile, []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"bridge","bridge":"bx%08x","ipam":{"type":"host-local","subnet":%q}}]}`, extName, rand.Uint32(), testSubnet())), 0o644)
	ext := networkJSON(t, d, "network", "ls", "--format", "json", "-f", "name="+extName)
	if len(ext) != 1 || ext[0].Source != extFile {
		t.Errorf("user conflist in ls: %+v", ext)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"network", "create", "front"}, 1, `network "front" already exists`},
		{[]string{"network", "create", "--subnet", subnet, "other"}, 1, "overlaps subnet " + subnet + " of network front"},
		{[]string{"network", "create", "-d", "overlay", "o1"}, 1, `driver "overlay" is not bridge, macvlan or ipvlan`},
		{[]string{"network", "create", "--subnet", "10.1.2.3/24", "o2"}, 1, "has host bits set"},
		{[]string{"network", "create", "-o", "nokey", "o3"}, 125, `option "nokey" is not KEY=VALUE`},
		{[]string{"network", "create"}, 125, "needs exactly 1 argument"},
		{[]string{"network", "rm", "nosuch"}, 1, `network "nosuch": not found`},
		{[]string{"network", "rm", "berth"}, 1, "default network and cannot be removed"},
		{[]string{"network", "rm", extName}, 1, "remove that file"},
		{[]string{"network", "ls", "-f", "colour=red"}, 125, `key "colour"`},
	} {
		r := d.Berth(c.args...)
		if r.ExitCode != c.code || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("berth %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), r.ExitCode, r.Stderr, c.code, c.want)
		}
	}

	d.MustBerth("network", "create", "--subnet", testSubnet(), "spare")
	if out := d.BerthIn("n\n", "network", "prune"); out.ExitCode != 0 || strings.Contains(out.Stdout, "Deleted") {
		t.Errorf("prune answered no: %+v", out)
	}
	pruned := d.MustBerth("network", "prune", "-f")
	for _, want := range []string{"Deleted Networks:", "front", "back", "spare"} {
		if !strings.Contains(pruned, want) {
			t.Errorf("prune -f lacks %q:\n%s", want, pruned)
		}
	}
	names := d.MustBerth("network", "ls", "--format", "{{.Name}}")
	if strings.Contains(names, "front") || !strings.Contains(names, "berth") || !strings.Contains(names, extName) {
		t.Errorf("after prune:\n%s", names)
	}
	d.MustBerth("network", "create", "--subnet", testSubnet(), "gone")
	if out := d.MustBerth("network", "rm", "gone"); out != "gone\n" {
		t.Errorf("rm printed %q", out)
	}
}

// TestNetworkAttachSurvivesCrash attaches a namespace through the API,
// kills berthd with SIGKILL, and checks the restarted berthd still knows
// the attachment, still serves its published port, and tears it down
// completely.
func TestNetworkAttachSurvivesCrash(t *testing.T) {
	needNetworking(t)
	t.Parallel()
	restoreSharedChains(t)
	d := daemon.Start(t)
	subnet := testSubnet()
	d.MustBerth("network", "create", "--subnet", subnet, "crashnet")

	nsPath := filepath.Join(d.Dir, "test-netns")
	if err := netns.Create(nsPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Remove(nsPath) })
	body := serveInNS(t, nsPath, 8080)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "containerd-namespace", "default")
	client := networksapi.NewNetworksClient(d.Conn())
	resp, err := client.Attach(ctx, &networksapi.AttachRequest{
		ContainerId: "web1", Name: "web", Network: "crashnet", Netns: nsPath,
		Ports: []*networksapi.PortMapping{{ContainerPort: 8080, Protocol: "tcp"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Runs before the namespace and the daemon go, should the test fail
	// before its own detach.
	t.Cleanup(func() {
		networksapi.NewNetworksClient(d.Conn()).Detach(ctx, &networksapi.DetachRequest{ContainerId: "web1", Network: "crashnet"})
	})
	port := resp.Attachment.Ports[0].HostPort
	if port == 0 || len(resp.Attachment.Ips) != 1 {
		t.Fatalf("attachment: %+v", resp.Attachment)
	}
	if got, err := get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || got != body {
		t.Fatalf("published port: %q %v", got, err)
	}
	r := d.Berth("network", "rm", "crashnet")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "in use by container(s) default/web1") {
		t.Errorf("rm of a network in use: %+v", r)
	}
	bridge := networkJSON(t, d, "network", "inspect", "crashnet")
	if len(bridge[0].Containers) != 1 || bridge[0].Containers[0].ID != "web1" || bridge[0].Containers[0].Addresses[0] != resp.Attachment.Ips[0].Address {
		t.Errorf("inspect shows %+v", bridge[0].Containers)
	}

	d.Kill()
	d.Restart()

	in := networkJSON(t, d, "network", "inspect", "crashnet")
	if len(in[0].Containers) != 1 || in[0].Containers[0].Addresses[0] != resp.Attachment.Ips[0].Address || len(in[0].Containers[0].Ports) != 1 {
		t.Fatalf("after a crash and restart: %+v", in[0].Containers)
	}
	if got, err := get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || got != body {
		t.Errorf("published port after restart: %q %v", got, err)
	}
	client = networksapi.NewNetworksClient(d.Conn())
	if _, err := client.Detach(ctx, &networksapi.DetachRequest{ContainerId: "web1", Network: "crashnet"}); err != nil {
		t.Fatal(err)
	}
	if _, err := get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Error("the port answers after detach")
	}
	if out, _ := exec.Command("nsenter", "--net="+nsPath, "ip", "-o", "link").CombinedOutput(); strings.Contains(string(out), "eth0") {
		t.Errorf("interface left in the namespace:\n%s", out)
	}
	for _, table := range []string{"filter", "nat"} {
		rules, _ := exec.Command("iptables", "-t", table, "-S").CombinedOutput()
		for _, line := range strings.Split(string(rules), "\n") {
			if strings.Contains(line, `"crashnet"`) || strings.Contains(line, "default--web1") {
				t.Errorf("rule left: %s", line)
			}
		}
	}
	leases, _ := filepath.Glob(filepath.Join(d.State, "io.berth.network.v1.cni", "ipam", "crashnet", "10.*"))
	if len(leases) != 0 {
		t.Errorf("leases left: %v", leases)
	}
	d.MustBerth("network", "rm", "crashnet")
}

// restoreSharedChains removes, at the end of the test, the chains meant
// to outlive every network (berth's BERTH-FORWARD, portmap's
// CNI-HOSTPORT-*) when they did not exist before it and no container
// anywhere still has a published port or a berth network rule.
func restoreSharedChains(t *testing.T) {
	chains := []struct{ table, chain string }{
		{"filter", "BERTH-FORWARD"}, {"nat", "CNI-HOSTPORT-DNAT"}, {"nat", "CNI-HOSTPORT-MASQ"}, {"nat", "CNI-HOSTPORT-SETMARK"},
	}
	ipt := func(args ...string) (string, error) {
		out, err := exec.Command("iptables", append([]string{"-w", "10"}, args...)...).CombinedOutput()
		return string(out), err
	}
	existed := map[string]bool{}
	for _, c := range chains {
		_, err := ipt("-t", c.table, "-S", c.chain)
		existed[c.chain] = err == nil
	}
	t.Cleanup(func() {
		for _, c := range chains {
			if out, err := ipt("-t", c.table, "-S", c.chain); err == nil && strings.Count(out, "\n-A ") > 0 && c.chain != "CNI-HOSTPORT-MASQ" && c.chain != "CNI-HOSTPORT-SETMARK" {
				return // in use
			}
		}
		for _, c := range chains {
			if existed[c.chain] {
				continue
			}
			all, _ := ipt("-t", c.table, "-S")
			for _, line := range strings.Split(all, "\n") {
				if strings.HasPrefix(line, "-A ") && strings.HasSuffix(line, "-j "+c.chain) && !strings.HasPrefix(line, "-A "+c.chain+" ") {
					// Jump rules here carry no quoted text, so a plain split
					// gives their arguments.
					args := strings.Fields(line)
					if strings.Contains(line, `"`) {
						args = append([]string{"-A"}, splitQuoted(line[3:])...)
					}
					args[0] = "-D"
					ipt(append([]string{"-t", c.table}, args...)...)
				}
			}
			ipt("-t", c.table, "-F", c.chain)
			ipt("-t", c.table, "-X", c.chain)
		}
	})
}

// splitQuoted splits iptables -S arguments, keeping double-quoted words
// whole.
func splitQuoted(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func serveInNS(t *testing.T, nsPath string, port int) string {
	t.Helper()
	dir := t.TempDir()
	body := fmt.Sprintf("hello %d", rand.Uint32())
	os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644)
	cmd := exec.Command("nsenter", "--net="+nsPath, "--", "busybox", "httpd", "-f", "-p", fmt.Sprint(port), "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		out, err := exec.Command("nsenter", "--net="+nsPath, "--", "busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://127.0.0.1:%d/", port)).Output()
		if err == nil && string(out) == body {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("httpd did not start in the namespace")
	return ""
}

func get(url string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
