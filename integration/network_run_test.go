package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/daemon"
)

// netDaemon is a berthd with busybox (and the multi-layer image, which
// exposes 8080/tcp and 53/udp) loaded, for containers with networks.
func netDaemon(t *testing.T) *daemon.Daemon {
	t.Helper()
	needNetworking(t)
	restoreSharedChains(t)
	d := cliDaemon(t)
	ml, err := testimages.MultiLayer()
	if err != nil {
		t.Fatal(err)
	}
	d.MustBerth("load", "-i", writeArchive(t, t.TempDir(), ml))
	return d
}

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitGet polls url until it answers (a container's server needs a
// moment after its start).
func waitGet(t *testing.T, url string) string {
	t.Helper()
	var lastErr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(30 * time.Millisecond) {
		body, err := get(url)
		if err == nil {
			return body
		}
		lastErr = err
	}
	t.Fatalf("GET %s: %v", url, lastErr)
	return ""
}

// hostAddr is an IPv4 address of this host other than loopback, "" when
// it has none.
func hostAddr(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			if !strings.HasPrefix(n.IP.String(), "10.") { // not one of the test bridges
				return n.IP.String()
			}
		}
	}
	return ""
}

type netInspect struct {
	ID              string `json:"Id"`
	HostsPath       string
	ResolvConfPath  string
	NetworkSettings struct {
		SandboxKey string
		IPAddress  string
		Ports      map[string][]struct{ HostIp, HostPort string }
		Networks   map[string]struct {
			IPAddress, Gateway, MacAddress, NetworkID string
			IPPrefixLen                               int
			Aliases, DNSNames                         []string
		}
	}
	HostConfig struct {
		NetworkMode  string
		PortBindings map[string][]struct{ HostIp, HostPort string }
	}
}

func inspectNet(t *testing.T, d *daemon.Daemon, ref string) netInspect {
	t.Helper()
	var out []netInspect
	if err := json.Unmarshal([]byte(d.MustBerth("inspect", "--type", "container", ref)), &out); err != nil || len(out) != 1 {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	return out[0]
}

func TestNetworkRunPublish(t *testing.T) {
	t.Parallel()
	d := netDaemon(t)
	port := freePort(t)
	d.MustBerth("run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:8080", port), "busybox", "httpd", "-f", "-p", "8080", "-h", "/www")
	if body := waitGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); body != testimages.IndexHTML {
		t.Errorf("GET through 127.0.0.1: %q", body)
	}
	if addr := hostAddr(t); addr != "" {
		if body := waitGet(t, fmt.Sprintf("http://%s/index.html", net.JoinHostPort(addr, strconv.Itoa(port)))); body != testimages.IndexHTML {
			t.Errorf("GET through %s: %q", addr, body)
		}
	} else {
		t.Log("the host has no non-loopback IPv4 address: only 127.0.0.1 checked")
	}
	want := fmt.Sprintf("0.0.0.0:%d->8080/tcp", port)
	if got := d.MustBerth("ps", "--format", "{{.Ports}}", "-f", "name=web"); strings.TrimSpace(got) != want {
		t.Errorf("ps PORTS: %q, want %q", got, want)
	}
	if table := d.MustBerth("ps"); !strings.Contains(table, "PORTS") || !strings.Contains(table, want) {
		t.Errorf("ps table:\n%s", table)
	}
	if got := d.MustBerth("port", "web"); got != fmt.Sprintf("8080/tcp -> 0.0.0.0:%d\n", port) {
		t.Errorf("port web: %q", got)
	}
	if got := d.MustBerth("port", "web", "8080/tcp"); got != fmt.Sprintf("0.0.0.0:%d\n", port) {
		t.Errorf("port web 8080/tcp: %q", got)
	}
	wantExit(t, d.Berth("port", "web", "9090"), 1, "no public port '9090/tcp'")

	in := inspectNet(t, d, "web")
	ep, ok := in.NetworkSettings.Networks["berth"]
	if !ok || ep.IPAddress == "" || ep.Gateway == "" || ep.MacAddress == "" || ep.IPPrefixLen != 24 || ep.NetworkID == "" {
		t.Errorf("inspect NetworkSettings.Networks: %+v", in.NetworkSettings.Networks)
	}
	if in.NetworkSettings.IPAddress != ep.IPAddress || in.HostConfig.NetworkMode != "berth" {
		t.Errorf("inspect: IPAddress %q, NetworkMode %q", in.NetworkSettings.IPAddress, in.HostConfig.NetworkMode)
	}
	if b := in.NetworkSettings.Ports["8080/tcp"]; len(b) != 1 || b[0].HostPort != strconv.Itoa(port) {
		t.Errorf("inspect Ports: %+v", in.NetworkSettings.Ports)
	}
	if b := in.HostConfig.PortBindings["8080/tcp"]; len(b) != 1 || b[0].HostPort != strconv.Itoa(port) {
		t.Errorf("inspect PortBindings: %+v", in.HostConfig.PortBindings)
	}
	if _, err := os.Stat(in.NetworkSettings.SandboxKey); err != nil {
		t.Errorf("SandboxKey: %v", err)
	}
	// The generated files are the container's own.
	hosts := d.MustBerth("exec", "web", "cat", "/etc/hosts")
	if !strings.Contains(hosts, ep.IPAddress+"\t"+in.ID[:12]) {
		t.Errorf("/etc/hosts lacks the container's address and hostname:\n%s", hosts)
	}
	if got := d.MustBerth("exec", "web", "hostname"); got != in.ID[:12]+"\n" {
		t.Errorf("hostname %q", got)
	}

	// -p containerPort: a free host port; -P: every exposed port.
	d.MustBerth("run", "-d", "--name", "anyport", "-p", "8080", "busybox", "httpd", "-f", "-p", "8080", "-h", "/www")
	line := strings.TrimSpace(d.MustBerth("port", "anyport", "8080"))
	_, hostPort, _ := strings.Cut(line, ":")
	if body := waitGet(t, "http://127.0.0.1:"+hostPort+"/"); body != testimages.IndexHTML {
		t.Errorf("GET of a free host port (%s): %q", line, body)
	}
	d.MustBerth("run", "-d", "--name", "all", "-u", "0", "-P", testimages.MultiLayerName, "sleep", "60")
	ports := d.MustBerth("port", "all")
	if !regexp.MustCompile(`(?m)^53/udp -> 0\.0\.0\.0:\d+$`).MatchString(ports) || !regexp.MustCompile(`(?m)^8080/tcp -> 0\.0\.0\.0:\d+$`).MatchString(ports) {
		t.Errorf("port of a -P container:\n%s", ports)
	}

	// Stopped, a container publishes nothing; started again, the same.
	d.MustBerth("stop", "-t", "1", "web")
	if got := d.MustBerth("port", "web"); got != "" {
		t.Errorf("port of a stopped container: %q", got)
	}
	if _, err := get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Error("the port still answers after stop")
	}
	d.MustBerth("start", "web")
	if body := waitGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); body != testimages.IndexHTML {
		t.Errorf("GET after start: %q", body)
	}
}

func TestNetworkRunUserNetworks(t *testing.T) {
	t.Parallel()
	d := netDaemon(t)
	d.MustBerth("network", "create", "--subnet", testSubnet(), "front")
	d.MustBerth("network", "create", "--subnet", testSubnet(), "back")
	d.MustBerth("run", "-d", "--name", "srv", "--network", "front", "--network-alias", "api", "busybox", "httpd", "-f", "-p", "8080", "-h", "/www")
	// Name, alias and short id resolve on the network.
	srvID := strings.TrimSpace(d.MustBerth("inspect", "-f", "{{.Id}}", "srv"))
	script := "ping -c1 -W2 srv && for n in srv api " + srvID[:12] + "; do for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://$n:8080/ && break; sleep 0.2; done; done"
	r := d.Berth("run", "--rm", "--network", "front", "busybox", "sh", "-c", script)
	if r.ExitCode != 0 || strings.Count(r.Stdout, testimages.IndexHTML) != 3 {
		t.Errorf("same network: exit %d\nstdout: %s\nstderr: %s", r.ExitCode, r.Stdout, r.Stderr)
	}
	r = d.Berth("run", "--rm", "--network", "back", "busybox", "sh", "-c", "ping -c1 -W1 srv")
	if r.ExitCode == 0 {
		t.Errorf("a container on another network resolved and reached srv: %s", r.Stdout)
	}
	srvIP := inspectNet(t, d, "srv").NetworkSettings.Networks["front"].IPAddress
	r = d.Berth("run", "--rm", "--network", "back", "busybox", "wget", "-T", "2", "-qO-", "http://"+srvIP+":8080/")
	if r.ExitCode == 0 {
		t.Errorf("a container on another network reached srv by address %s", srvIP)
	}

	// connect joins a running container at once, with its alias;
	// disconnect takes it off.
	d.MustBerth("run", "-d", "--name", "cli", "--network", "back", "busybox", "sleep", "60")
	d.MustBerth("network", "connect", "--alias", "client", "front", "cli")
	if out := d.MustBerth("exec", "cli", "wget", "-qO-", "http://srv:8080/"); out != testimages.IndexHTML {
		t.Errorf("wget after connect: %q", out)
	}
	r = d.Berth("run", "--rm", "--network", "front", "busybox", "ping", "-c1", "-W2", "client")
	wantExit(t, r, 0)
	if eps := inspectNet(t, d, "cli").NetworkSettings.Networks; len(eps) != 2 || !slices.Contains(eps["front"].Aliases, "client") {
		t.Errorf("networks after connect: %+v", eps)
	}
	wantExit(t, d.Berth("network", "connect", "front", "cli"), 1, "already connected to network front")
	d.MustBerth("network", "disconnect", "front", "cli")
	if out := d.MustBerth("exec", "cli", "ip", "-o", "link"); strings.Contains(out, "eth1") {
		t.Errorf("eth1 left after disconnect:\n%s", out)
	}
	wantExit(t, d.Berth("network", "disconnect", "front", "cli"), 1, "not connected to network front")
	// Off its last network it keeps lo only, and can join one again.
	d.MustBerth("network", "disconnect", "back", "cli")
	if out := d.MustBerth("exec", "cli", "ip", "-o", "link"); strings.Count(out, "\n") != 1 {
		t.Errorf("interfaces off every network:\n%s", out)
	}
	d.MustBerth("network", "connect", "front", "cli")
	if out := d.MustBerth("exec", "cli", "wget", "-qO-", "http://srv:8080/"); out != testimages.IndexHTML {
		t.Errorf("wget after connecting again: %q", out)
	}
	wantExit(t, d.Berth("network", "connect", "host", "cli"), 1, "network mode")
	wantExit(t, d.Berth("network", "connect", "nosuch", "cli"), 1, "network nosuch not found")

	// A network in use cannot be removed.
	wantExit(t, d.Berth("network", "rm", "front"), 1, "in use")

	// none: only lo. host: the host's interfaces and name.
	if out := d.MustBerth("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"); strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") {
		t.Errorf("--network none interfaces:\n%s", out)
	}
	// (Other tests add and remove interfaces meanwhile: only those here
	// before and after the container ran must be seen.)
	before := interfaceNames(t)
	out := d.MustBerth("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
	after := interfaceNames(t)
	for _, name := range before {
		if slices.Contains(after, name) && !strings.Contains(out, " "+name+":") && !strings.Contains(out, " "+name+"@") {
			t.Errorf("--network host does not see %s:\n%s", name, out)
		}
	}
	host, _ := os.Hostname()
	if out := d.MustBerth("run", "--rm", "--network", "host", "busybox", "hostname"); out != host+"\n" {
		t.Errorf("--network host hostname %q, want %q", out, host)
	}
	// container:<name> shares srv's namespace.
	if out := d.MustBerth("run", "--rm", "--network", "container:srv", "busybox", "wget", "-qO-", "http://127.0.0.1:8080/"); out != testimages.IndexHTML {
		t.Errorf("--network container:srv: %q", out)
	}
	// --dns, --dns-search, --add-host, --hostname.
	out = d.MustBerth("run", "--rm", "--network", "none", "--hostname", "box1", "--dns", "192.0.2.53", "--dns-search", "example.test",
		"--add-host", "db.test:192.0.2.7", "busybox", "sh", "-c", "cat /etc/resolv.conf /etc/hosts; hostname")
	for _, want := range []string{"nameserver 192.0.2.53", "search example.test", "192.0.2.7\tdb.test", "box1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("generated files lack %q:\n%s", want, out)
		}
	}
}

func interfaceNames(t *testing.T) []string {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range ifaces {
		out = append(out, i.Name)
	}
	return out
}

// netResources counts what a daemon's default network holds on the host:
// rules naming its bridge or subnet, address leases, veths on its bridge,
// namespace mounts.
type netResources struct {
	rules, leases, veths, netns int
}

func countNetResources(t *testing.T, d *daemon.Daemon, bridge, subnetPrefix string) netResources {
	t.Helper()
	var r netResources
	for _, table := range []string{"filter", "nat"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, bridge) || strings.Contains(line, subnetPrefix) {
				r.rules++
			}
		}
	}
	state := filepath.Join(d.State, "io.berth.network.v1.cni")
	filepath.Walk(filepath.Join(state, "ipam"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && info.Name() != "lock" && !strings.HasPrefix(info.Name(), "last_reserved_ip") {
			r.leases++
		}
		return nil
	})
	if ents, err := os.ReadDir(filepath.Join("/sys/class/net", bridge, "brif")); err == nil {
		r.veths = len(ents)
	}
	r.netns = len(daemon.MountsUnder(filepath.Join(state, "netns")))
	return r
}

// defaultBridge reads the daemon's default network's bridge and the
// first three octets of its subnet.
func defaultBridge(t *testing.T, d *daemon.Daemon) (bridge, prefix string) {
	t.Helper()
	var n []struct {
		Bridge  string
		Subnets []struct{ Subnet string }
	}
	if err := json.Unmarshal([]byte(d.MustBerth("network", "inspect", "berth")), &n); err != nil || len(n) != 1 || n[0].Bridge == "" || len(n[0].Subnets) == 0 {
		t.Fatalf("inspect the default network: %v %+v", err, n)
	}
	s := n[0].Subnets[0].Subnet
	return n[0].Bridge, s[:strings.LastIndexByte(s, '.')+1]
}

// cniChains lists the per-container chains portmap and bridge made for
// container id.
func cniChains(t *testing.T, id string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`-j (CNI-[0-9a-f]+|CNI-DN-[0-9a-f]+)`)
	var chains []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, id) {
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				chains = append(chains, m[1])
			}
		}
	}
	return chains
}

func chainExists(chain string) bool {
	return exec.Command("iptables", "-w", "10", "-t", "nat", "-S", chain).Run() == nil
}

func TestNetworkRunCycles(t *testing.T) {
	t.Parallel()
	d := netDaemon(t)
	bridge, prefix := defaultBridge(t, d)
	// One cycle first: the bridge stays while the daemon runs, the
	// network's rules for a grace of seconds after its last container.
	id := strings.TrimSpace(d.MustBerth("run", "-d", "-p", fmt.Sprintf("%d:80", freePort(t)), "busybox", "sleep", "60"))
	d.MustBerth("rm", "-f", id)
	before := countNetResources(t, d, bridge, prefix)
	var chains []string
	cycles := 100
	if testing.Short() {
		cycles = 10
	}
	for i := 0; i < cycles; i++ {
		id := strings.TrimSpace(d.MustBerth("run", "-d", "-p", fmt.Sprintf("%d:80", freePort(t)), "busybox", "sleep", "60"))
		if i%10 == 0 {
			during := countNetResources(t, d, bridge, prefix)
			if during.leases != before.leases+1 || during.veths != before.veths+1 || during.netns != before.netns+1 || during.rules <= before.rules {
				t.Fatalf("cycle %d: running container holds %+v, before %+v", i, during, before)
			}
			chains = append(chains, cniChains(t, id)...)
		}
		d.MustBerth("rm", "-f", id)
	}
	if after := countNetResources(t, d, bridge, prefix); after != before {
		t.Errorf("after %d run -p/rm cycles: %+v, before %+v", cycles, after, before)
	}
	if len(chains) == 0 {
		t.Error("no per-container chains seen while containers ran")
	}
	for _, c := range chains {
		if chainExists(c) {
			t.Errorf("chain %s of a removed container is left", c)
		}
	}
}

func TestNetworkRunBadInput(t *testing.T) {
	t.Parallel()
	d := netDaemon(t)
	bridge, prefix := defaultBridge(t, d)
	port := freePort(t)
	d.MustBerth("run", "-d", "--name", "holder", "-p", fmt.Sprintf("%d:8080", port), "busybox", "sleep", "60")
	before := countNetResources(t, d, bridge, prefix)
	holderID := strings.TrimSpace(d.MustBerth("inspect", "-f", "{{.Id}}", "holder"))

	// The port is taken: the error names the holder, the container stays
	// created, nothing of its network is left.
	r := d.Berth("run", "-d", "--name", "second", "-p", fmt.Sprintf("%d:80", port), "busybox", "sleep", "60")
	wantExit(t, r, 125, fmt.Sprintf("host port 0.0.0.0:%d/tcp is already published by container holder (%s)", port, holderID[:12]))
	if st := state(t, d, "second"); st.Status != "created" {
		t.Errorf("container with a taken port is %s", st.Status)
	}
	if after := countNetResources(t, d, bridge, prefix); after != before {
		t.Errorf("a failed start left %+v, before %+v", after, before)
	}
	if sbs, _ := os.ReadDir(filepath.Join(d.State, "io.berth.network.v1.cni", "sandboxes", "default")); len(sbs) != 1 {
		t.Errorf("sandboxes after a failed start: %d, want only the holder's", len(sbs))
	}
	wantExit(t, d.Berth("start", "second"), 1, "already published by container holder")
	d.MustBerth("rm", "-f", "holder")
	d.MustBerth("start", "second")
	d.MustBerth("rm", "-f", "second")

	recs, _ := containersLeft(t, d)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-p", "99999:80"}, `host port "99999" is not a number from 1 to 65535`},
		{[]string{"-p", "80/icmp"}, `protocol "icmp" is not tcp, udp or sctp`},
		{[]string{"-p", "8000-8002:80-81"}, "host range 8000-8002 has 3 ports but container range 80-81 has 2"},
		{[]string{"-p", "a:b:c:d"}, "too many ':'"},
		{[]string{"-p", "8080:80", "-p", "8080:81"}, "published twice"},
		{[]string{"--network", "nosuch"}, "network nosuch not found"},
		{[]string{"--network", "container:nosuch"}, "no such container: nosuch"},
		{[]string{"--network", "container:x", "-p", "80"}, "conflicting options: port publishing"},
		{[]string{"--network", "none", "--network", "berth"}, "cannot be combined with other networks"},
		{[]string{"--network", "none", "-p", "80"}, "port publishing and a container without a network"},
		{[]string{"--network-alias", "x"}, "not the default network"},
		{[]string{"--ip", "1.2.3.4"}, "outside the subnets of network berth"},
		{[]string{"--ip", "nope"}, `invalid value "nope" for --ip`},
		{[]string{"--mac-address", "zz"}, "--mac-address"},
		{[]string{"--add-host", "nocolon"}, "--add-host"},
		{[]string{"--dns", "not-an-ip"}, "not-an-ip"},
	} {
		r := d.Berth(append(append([]string{"run", "-d"}, c.args...), "busybox", "true")...)
		wantExit(t, r, 125, c.want)
	}
	if after, _ := containersLeft(t, d); len(after) != len(recs) {
		t.Errorf("failed creates left containers: %v", after)
	}

	// A network in use, and overlapping subnets.
	subnet := testSubnet()
	d.MustBerth("network", "create", "--subnet", subnet, "busy")
	wantExit(t, d.Berth("network", "create", "--subnet", subnet, "twin"), 1, "overlaps subnet "+subnet+" of network busy")
	d.MustBerth("run", "-d", "--name", "user", "--network", "busy", "busybox", "sleep", "60")
	wantExit(t, d.Berth("network", "rm", "busy"), 1, "network busy is in use")
	d.MustBerth("rm", "-f", "user")
	d.MustBerth("network", "rm", "busy")
}

// killContainer kills a container's process from the host.
func killContainer(t *testing.T, d *daemon.Daemon, ref string) {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(d.MustBerth("inspect", "-f", "{{.State.Pid}}", ref)))
	if err != nil || pid <= 0 {
		t.Fatalf("pid of %s: %v", ref, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

func TestNetworkRunDaemonKilled(t *testing.T) {
	t.Parallel()
	d := netDaemon(t)
	bridge, prefix := defaultBridge(t, d)
	id := strings.TrimSpace(d.MustBerth("run", "-d", "-p", fmt.Sprintf("%d:80", freePort(t)), "busybox", "sleep", "60"))
	d.MustBerth("rm", "-f", id)
	before := countNetResources(t, d, bridge, prefix)

	// One container dies while berthd is down; another is still running
	// when berthd comes back and is removed with rm -f.
	d.MustBerth("run", "-d", "--name", "dies", "-p", fmt.Sprintf("%d:80", freePort(t)), "busybox", "sleep", "60")
	d.MustBerth("run", "-d", "--name", "lives", "-p", fmt.Sprintf("%d:80", freePort(t)), "busybox", "sleep", "60")
	diesID := strings.TrimSpace(d.MustBerth("inspect", "-f", "{{.Id}}", "dies"))
	chains := cniChains(t, diesID)
	pid := strings.TrimSpace(d.MustBerth("inspect", "-f", "{{.State.Pid}}", "dies"))
	d.Kill()
	n, _ := strconv.Atoi(pid)
	syscall.Kill(n, syscall.SIGKILL)
	d.Restart()
	waitState(t, d, "dies", "exited", func(s inspectedState) bool { return s.Status == "exited" })
	// Its network went with it: only lives' is left.
	waitFor(t, "the dead container's network to go", func() bool {
		now := countNetResources(t, d, bridge, prefix)
		return now.leases == before.leases+1 && now.veths == before.veths+1 && now.netns == before.netns+1
	})
	for _, c := range chains {
		if chainExists(c) {
			t.Errorf("chain %s of the container that died is left", c)
		}
	}
	d.MustBerth("rm", "dies")

	// A shim killed while berthd is down: berthd finds it dead at its
	// start and releases the container's network.
	d.MustBerth("run", "-d", "--name", "shimdies", "-p", fmt.Sprintf("%d:80", freePort(t)), "busybox", "sleep", "60")
	shimID := strings.TrimSpace(d.MustBerth("inspect", "-f", "{{.Id}}", "shimdies"))
	shims := shimPids(d, shimID)
	if len(shims) != 1 {
		t.Fatalf("shims of shimdies: %v", shims)
	}
	d.Kill()
	syscall.Kill(shims[0], syscall.SIGKILL)
	d.Restart()
	waitState(t, d, "shimdies", "exited", func(s inspectedState) bool { return s.Status == "exited" })
	waitFor(t, "the network of the container whose shim died to go", func() bool {
		now := countNetResources(t, d, bridge, prefix)
		return now.leases == before.leases+1 && now.veths == before.veths+1 && now.netns == before.netns+1
	})
	d.MustBerth("rm", "shimdies")

	// kill -9 again, then rm -f of the running one.
	d.Kill()
	d.Restart()
	d.MustBerth("rm", "-f", "lives")
	if after := countNetResources(t, d, bridge, prefix); after != before {
		t.Errorf("after the kills and rm: %+v, before %+v", after, before)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestNetworkRunRestartPolicy(t *testing.T) {
	t.Parallel()
	d := netDaemon(t)
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	d.MustBerth("run", "-d", "--name", "web", "--restart", "always", "-p", fmt.Sprintf("%d:8080", port), "busybox", "httpd", "-f", "-p", "8080", "-h", "/www")
	waitGet(t, url)
	firstIP := inspectNet(t, d, "web").NetworkSettings.IPAddress
	killContainer(t, d, "web")
	st := waitState(t, d, "web", "restarted", func(s inspectedState) bool { return s.RestartCount >= 1 && s.Running })
	if body := waitGet(t, url); body != testimages.IndexHTML {
		t.Errorf("GET after the restart: %q", body)
	}
	if got := d.MustBerth("port", "web", "8080"); got != fmt.Sprintf("0.0.0.0:%d\n", port) {
		t.Errorf("port after the restart (%+v): %q", st, got)
	}
	if ip := inspectNet(t, d, "web").NetworkSettings.IPAddress; ip == "" {
		t.Errorf("no address after the restart (was %s)", firstIP)
	}
	// And across a berthd restart.
	d.Restart()
	if body := waitGet(t, url); body != testimages.IndexHTML {
		t.Errorf("GET after berthd restarted: %q", body)
	}
}
