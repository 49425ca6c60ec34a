package cni

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/network"
)

func gatewayOf(n *network.Network) string { return n.Subnets[0].Gateway.String() }

func ipOf(a *network.Attachment) string { return a.IPs[0].Address.Addr().String() }

func TestContainersReachAndResolveEachOther(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.createNetwork(network.CreateRequest{Labels: map[string]string{"team": "a"}})
	if !n.DNS || !n.Managed() || n.Driver != network.DriverBridge || n.Labels["team"] != "a" {
		t.Fatalf("network = %+v", n)
	}
	sa, sb := e.sandbox("ca"), e.sandbox("cb")
	aa := e.attach(network.AttachRequest{ContainerID: "ca", Name: "alpha", Aliases: []string{"db"}, Network: n.Name})
	ab := e.attach(network.AttachRequest{ContainerID: "cb", Name: "beta", Network: n.Name})

	mustInNS(t, sa.NetNS, "busybox", "ping", "-c1", "-W3", ipOf(ab))
	mustInNS(t, sb.NetNS, "busybox", "ping", "-c1", "-W3", ipOf(aa))
	gw := gatewayOf(n)
	for _, name := range []string{"alpha", "db", "ALPHA", "alpha." + n.Name} {
		out := mustInNS(t, sb.NetNS, "busybox", "nslookup", name, gw)
		if !strings.Contains(out, "Address: "+ipOf(aa)) {
			t.Errorf("nslookup %s from beta:\n%s", name, out)
		}
	}
	out := mustInNS(t, sa.NetNS, "busybox", "nslookup", ipOf(ab), gw)
	if !strings.Contains(out, "beta."+n.Name) {
		t.Errorf("reverse lookup of beta:\n%s", out)
	}
	// By name over HTTP, as an application would.
	body := serveHTTP(t, sb.NetNS, 8080)
	if got := mustInNS(t, sa.NetNS, "busybox", "wget", "-q", "-O", "-", "http://"+ipOf(ab)+":8080/"); got != body {
		t.Errorf("wget beta: %q", got)
	}

	resolv, _ := os.ReadFile(sa.ResolvConfPath)
	if !strings.Contains(string(resolv), "nameserver "+gw+"\n") || strings.Count(string(resolv), "nameserver") != 1 {
		t.Errorf("resolv.conf of a container on a user network:\n%s", resolv)
	}
	hosts, _ := os.ReadFile(sa.HostsPath)
	if !strings.Contains(string(hosts), ipOf(aa)+"\tca\n") {
		t.Errorf("hosts lacks the container's own address:\n%s", hosts)
	}
	if h, _ := os.ReadFile(sa.HostnamePath); string(h) != "ca\n" {
		t.Errorf("hostname file %q", h)
	}

	atts, err := e.m.Attachments(nsCtx(), network.AttachmentFilter{Network: n.Name})
	if err != nil || len(atts) != 2 || atts[0].ContainerID != "ca" || atts[1].ContainerID != "cb" {
		t.Errorf("Attachments of the network = %v, %v", atts, err)
	}
	if err := e.m.Check(nsCtx(), "ca", n.Name); err != nil {
		t.Errorf("Check: %v", err)
	}

	if err := e.m.Detach(nsCtx(), "cb", n.Name); err != nil {
		t.Fatal(err)
	}
	if out, err := inNS(sa.NetNS, "busybox", "nslookup", "beta", gw); err == nil && strings.Contains(out, ipOf(ab)) {
		t.Errorf("beta still resolves after it left:\n%s", out)
	}
	hosts, _ = os.ReadFile(sb.HostsPath)
	if strings.Contains(string(hosts), ipOf(ab)) {
		t.Errorf("hosts of a detached container still has its address:\n%s", hosts)
	}
}

func TestNetworksAreIsolated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	na := e.createNetwork(network.CreateRequest{})
	nb := e.createNetwork(network.CreateRequest{})
	sa, sb, sc := e.sandbox("a"), e.sandbox("b"), e.sandbox("c")
	aa := e.attach(network.AttachRequest{ContainerID: "a", Name: "a", Network: na.Name})
	ab := e.attach(network.AttachRequest{ContainerID: "b", Name: "b", Network: nb.Name})
	// c is on both networks.
	e.attach(network.AttachRequest{ContainerID: "c", Name: "c", Network: na.Name})
	acb := e.attach(network.AttachRequest{ContainerID: "c", Name: "c", Network: nb.Name})
	if acb.IfName != "eth1" {
		t.Errorf("second interface is %s, want eth1", acb.IfName)
	}

	if out, err := inNS(sa.NetNS, "busybox", "ping", "-c1", "-W1", ipOf(ab)); err == nil {
		t.Errorf("a reached b on another network:\n%s", out)
	}
	if out, err := inNS(sb.NetNS, "busybox", "ping", "-c1", "-W1", ipOf(aa)); err == nil {
		t.Errorf("b reached a on another network:\n%s", out)
	}
	if out, err := inNS(sa.NetNS, "busybox", "nslookup", "b", gatewayOf(na)); err == nil && strings.Contains(out, ipOf(ab)) {
		t.Errorf("a resolved b of another network:\n%s", out)
	}
	mustInNS(t, sc.NetNS, "busybox", "ping", "-c1", "-W3", ipOf(aa))
	mustInNS(t, sc.NetNS, "busybox", "ping", "-c1", "-W3", ipOf(ab))
	// c asks its first network's resolver for a name on its second.
	out := mustInNS(t, sc.NetNS, "busybox", "nslookup", "b", gatewayOf(na))
	if !strings.Contains(out, "Address: "+ipOf(ab)) {
		t.Errorf("c on both networks cannot resolve b:\n%s", out)
	}
	resolv, _ := os.ReadFile(filepath.Join(e.m.sandboxDir("test", "c"), "resolv.conf"))
	if !strings.Contains(string(resolv), "nameserver "+gatewayOf(na)) || !strings.Contains(string(resolv), "nameserver "+gatewayOf(nb)) {
		t.Errorf("resolv.conf of c:\n%s", resolv)
	}
}

// hostAddr is an IPv4 address of the host other than loopback (on an
// interface none of the tests made).
func hostAddr(t *testing.T) string {
	t.Helper()
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 || i.Flags&net.FlagUp == 0 || strings.HasPrefix(i.Name, "berth") || strings.HasPrefix(i.Name, "veth") {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	t.Skip("the host has no non-loopback IPv4 address")
	return ""
}

func httpGet(t *testing.T, url string) (string, error) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestPublishedPorts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.createNetwork(network.CreateRequest{})
	other := e.createNetwork(network.CreateRequest{})
	web, peer, far := e.sandbox("web"), e.sandbox("peer"), e.sandbox("far")
	ports, err := network.ParsePorts("8080", "127.0.0.1::8080")
	if err != nil {
		t.Fatal(err)
	}
	a := e.attach(network.AttachRequest{ContainerID: "web", Network: n.Name, Ports: ports})
	e.attach(network.AttachRequest{ContainerID: "peer", Network: n.Name})
	e.attach(network.AttachRequest{ContainerID: "far", Network: other.Name})
	if len(a.Ports) != 2 || a.Ports[0].HostPort == 0 || a.Ports[1].HostPort == 0 || a.Ports[0].HostPort == a.Ports[1].HostPort {
		t.Fatalf("published ports = %v", a.Ports)
	}
	body := serveHTTP(t, web.NetNS, 8080)
	all, lo := a.Ports[0].HostPort, a.Ports[1].HostPort
	host := hostAddr(t)

	for _, url := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/", all),
		fmt.Sprintf("http://%s:%d/", host, all),
		fmt.Sprintf("http://127.0.0.1:%d/", lo),
	} {
		if got, err := httpGet(t, url); err != nil || got != body {
			t.Errorf("GET %s from the host: %q, %v", url, got, err)
		}
	}
	if _, err := httpGet(t, fmt.Sprintf("http://%s:%d/", host, lo)); err == nil {
		t.Errorf("port %d published on 127.0.0.1 answered on %s", lo, host)
	}
	// Other containers reach it through the host's address: on the same
	// network (hairpin through the bridge) and from another network.
	for _, from := range []*network.Sandbox{peer, far, web} {
		url := fmt.Sprintf("http://%s:%d/", host, all)
		if got, err := inNS(from.NetNS, "busybox", "wget", "-q", "-O", "-", url); err != nil || got != body {
			t.Errorf("wget %s from %s: %q, %v", url, from.ID, got, err)
		}
	}
	// While published, the port is held: no other program can take it.
	if l, err := net.Listen("tcp", fmt.Sprintf(":%d", all)); err == nil {
		l.Close()
		t.Errorf("a host program could listen on published port %d", all)
	}
	if err := e.m.Detach(nsCtx(), "web", n.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", all)); err == nil {
		t.Error("the port still answers after detach")
	}
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", all))
	if err != nil {
		t.Errorf("port %d is still held after detach: %v", all, err)
	} else {
		l.Close()
	}
}

// freePort returns a TCP port no one uses right now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func TestPortConflicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.createNetwork(network.CreateRequest{})
	e.sandbox("first")
	second := e.sandbox("second")
	port := freePort(t)
	ports, _ := network.ParsePorts(fmt.Sprintf("%d:80", port))
	e.attach(network.AttachRequest{ContainerID: "first", Network: n.Name, Ports: ports})

	ipamBefore := leaseFiles(t, e, n.Name)
	for _, spec := range []string{fmt.Sprintf("%d:80", port), fmt.Sprintf("127.0.0.1:%d:81", port)} {
		ps, _ := network.ParsePorts(spec)
		_, err := e.m.Attach(nsCtx(), network.AttachRequest{ContainerID: "second", Network: n.Name, Ports: ps})
		if !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), "container test/first") {
			t.Errorf("%s: %v, want an error naming test/first", spec, err)
		}
	}
	// A UDP port of the same number is another port.
	udp, _ := network.ParsePorts(fmt.Sprintf("%d:80/udp", port))
	e.attach(network.AttachRequest{ContainerID: "second", Network: n.Name, Ports: udp})
	if err := e.m.Detach(nsCtx(), "second", n.Name); err != nil {
		t.Fatal(err)
	}

	// A port some program on the host listens on.
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	ps, _ := network.ParsePorts(fmt.Sprintf("%d:80", busy), "9999")
	_, err = e.m.Attach(nsCtx(), network.AttachRequest{ContainerID: "second", Network: n.Name, Ports: ps})
	if !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), "in use by another program") {
		t.Errorf("busy host port: %v", err)
	}
	// Nothing of the failed attachments is left.
	if out := mustInNS(t, second.NetNS, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("failed attach left an interface:\n%s", out)
	}
	if got := leaseFiles(t, e, n.Name); got != ipamBefore {
		t.Errorf("failed attaches left leases: %d, before %d", got, ipamBefore)
	}
	if atts, _ := e.m.Attachments(nsCtx(), network.AttachmentFilter{ContainerID: "second"}); len(atts) != 0 {
		t.Errorf("failed attach left records: %v", atts)
	}
	// The reserved port of the mapping that did succeed before the
	// failing one (none here: the busy one came first) and every random
	// one is free again: a range of 9999's mapping would otherwise leak.
	for spec, want := range map[string]string{
		"203.0.113.7:8080:80": "is not an address of this host",
		"[::1]:8080:80":       "no IPv6 subnet",
	} {
		ps, _ := network.ParsePorts(spec)
		if _, err := e.m.Attach(nsCtx(), network.AttachRequest{ContainerID: "second", Network: n.Name, Ports: ps}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", spec, err, want)
		}
	}
	for _, bad := range []network.PortMapping{{ContainerPort: 0, Protocol: "tcp"}, {ContainerPort: 80, Protocol: "icmp"}} {
		_, err := e.m.Attach(nsCtx(), network.AttachRequest{ContainerID: "second", Network: n.Name, Ports: []network.PortMapping{bad}})
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("mapping %+v: %v", bad, err)
		}
	}
}

// leaseFiles counts host-local's address leases of a network.
func leaseFiles(t testing.TB, e *testEnv, net string) int {
	entries, _ := os.ReadDir(filepath.Join(e.m.ipamDir(), net))
	n := 0
	for _, en := range entries {
		if _, err := netip.ParseAddr(en.Name()); err == nil {
			n++
		}
	}
	return n
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.createNetwork(network.CreateRequest{})
	ctx := nsCtx()
	for _, c := range []struct {
		req  network.CreateRequest
		want string
		is   error
	}{
		{network.CreateRequest{Name: n.Name}, "already exists", errdefs.ErrAlreadyExists},
		{network.CreateRequest{Name: "x1", Subnet: n.Subnets[0].Subnet.String()}, "overlaps subnet " + n.Subnets[0].Subnet.String() + " of network " + n.Name, errdefs.ErrFailedPrecondition},
		{network.CreateRequest{Name: "x2", Subnet: n.Subnets[0].Subnet.Addr().String() + "/16"}, "has host bits set", errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "bad name"}, "network name", errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "x3", Driver: "overlay"}, `driver "overlay"`, errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "x4", Subnet: "10.0.0.0/33"}, "not a CIDR", errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "x5", Subnet: "fd00::/64"}, "only IPv4", errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "x6", Subnet: randomSubnet(t), Gateway: "10.0.0.1"}, "outside subnet", errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "x7", Options: map[string]string{"colour": "red"}}, `option "colour"`, errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "x8", Driver: "macvlan"}, "needs the parent option", errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "x9", Driver: "macvlan", Options: map[string]string{"parent": "nosuchif0"}}, "does not exist on the host", errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "x10", Subnet: "127.0.0.0/24"}, "loopback", errdefs.ErrInvalidArgument},
		{network.CreateRequest{Name: "x11", Subnet: "224.1.0.0/16"}, "multicast", errdefs.ErrInvalidArgument},
	} {
		_, err := e.m.CreateNetwork(ctx, c.req)
		if err == nil || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %+v: %v, want %q", c.req, err, c.want)
		}
	}
	if r := foreignRoute(); r != nil {
		_, err := e.m.CreateNetwork(ctx, network.CreateRequest{Name: "x12", Subnet: r.dst.String()})
		if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "overlaps the host's route to "+r.dst.String()+" on "+r.dev) {
			t.Errorf("subnet of a host route: %v", err)
		}
	}
	nets, _ := e.m.Networks(ctx)
	if len(nets) != 1 {
		t.Errorf("failed creations left networks: %v", nets)
	}

	e.sandbox("user")
	e.attach(network.AttachRequest{ContainerID: "user", Network: n.Name})
	err := e.m.RemoveNetwork(ctx, n.Name)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "in use by container(s) test/user") {
		t.Errorf("remove a network in use: %v", err)
	}
	if _, err := e.m.Attach(ctx, network.AttachRequest{ContainerID: "user", Network: n.Name}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("attach twice: %v", err)
	}
	if _, err := e.m.Attach(ctx, network.AttachRequest{ContainerID: "user", Network: "nosuchnet"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("attach to a missing network: %v", err)
	}
	if _, err := e.m.Attach(ctx, network.AttachRequest{ContainerID: "nosandbox", Network: n.Name}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("attach without namespace: %v", err)
	}
	if _, err := e.m.Attach(ctx, network.AttachRequest{ContainerID: "x", Network: n.Name, NetNS: "/etc/hostname"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("attach to a file that is no namespace: %v", err)
	}
	if _, err := e.m.Attach(ctx, network.AttachRequest{ContainerID: "bad/id", Network: n.Name}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad container id: %v", err)
	}
	if _, err := e.m.Attach(ctx, network.AttachRequest{ContainerID: "user2", Network: n.Name, Aliases: []string{"no spaces"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad alias: %v", err)
	}
	if err := e.m.Detach(ctx, "nobody", n.Name); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("detach a container not attached: %v", err)
	}
	if _, err := e.m.CreateSandbox(ctx, network.SandboxRequest{ID: "user"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("sandbox twice: %v", err)
	}
	for _, req := range []network.SandboxRequest{
		{ID: "s1", Hostname: "-bad"},
		{ID: "s2", DNS: network.DNSConfig{Servers: []string{"dns.example"}}},
		{ID: "s3", ExtraHosts: []string{"db"}},
		{ID: "s4", HostNetwork: true, NetNS: "/proc/self/ns/net"},
	} {
		if _, err := e.m.CreateSandbox(ctx, req); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("sandbox %+v: %v", req, err)
		}
		if _, err := os.Stat(e.m.netnsPath("test", req.ID)); err == nil {
			t.Errorf("a refused sandbox %s left a namespace", req.ID)
		}
	}
}

func TestInternalNetwork(t *testing.T) {
	t.Parallel()
	fwd := startFakeUpstream(t, "192.0.2.53")
	e := newEnv(t, func(c *Config) { c.DNSForward = []string{fwd} })
	n := e.createNetwork(network.CreateRequest{Internal: true})
	sa, _ := e.sandbox("i1"), e.sandbox("i2")
	e.attach(network.AttachRequest{ContainerID: "i1", Name: "one", Network: n.Name})
	a2 := e.attach(network.AttachRequest{ContainerID: "i2", Name: "two", Network: n.Name})
	if out := mustInNS(t, sa.NetNS, "ip", "route"); strings.Contains(out, "default") {
		t.Errorf("a container on an internal network has a default route:\n%s", out)
	}
	out := mustInNS(t, sa.NetNS, "busybox", "nslookup", "two", gatewayOf(n))
	if !strings.Contains(out, ipOf(a2)) {
		t.Errorf("internal network DNS:\n%s", out)
	}
	if out, err := inNS(sa.NetNS, "busybox", "nslookup", "example.org", gatewayOf(n)); err == nil || strings.Contains(out, "192.0.2.53") {
		t.Errorf("an internal network forwarded an outside name:\n%s", out)
	}
	ps, _ := network.ParsePorts("80")
	if _, err := e.m.Attach(nsCtx(), network.AttachRequest{ContainerID: "i1", Network: n.Name, NetNS: sa.NetNS, IfName: "eth5", Ports: ps}); err == nil || !strings.Contains(err.Error(), "internal") {
		t.Errorf("ports on an internal network: %v", err)
	}
}

func TestDNSForwardingAndSandboxFiles(t *testing.T) {
	t.Parallel()
	fwd := startFakeUpstream(t, "192.0.2.10")
	// A container's own --dns server must be on port 53: a loopback
	// address of its own gives the test one.
	own := startFakeUpstreamAt(t, fmt.Sprintf("127.%d.%d.%d:53", 100+time.Now().UnixNano()%100, time.Now().UnixNano()%250+1, os.Getpid()%250+1), "192.0.2.20")
	e := newEnv(t, func(c *Config) { c.DNSForward = []string{fwd} })
	n := e.createNetwork(network.CreateRequest{})
	ctx := nsCtx()
	plain := e.sandbox("plain")
	custom, err := e.m.CreateSandbox(ctx, network.SandboxRequest{
		ID: "custom", Hostname: "web", Domainname: "example.org",
		DNS:        network.DNSConfig{Servers: []string{strings.Split(own, ":")[0]}, Search: []string{"corp.example"}, Options: []string{"ndots:3"}},
		ExtraHosts: []string{"db:10.9.9.9", "gw:host-gateway"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.attach(network.AttachRequest{ContainerID: "plain", Network: n.Name})
	ac := e.attach(network.AttachRequest{ContainerID: "custom", Network: n.Name})
	gw := gatewayOf(n)

	if out := mustInNS(t, plain.NetNS, "busybox", "nslookup", "example.org", gw); !strings.Contains(out, "192.0.2.10") {
		t.Errorf("forwarded to the configured upstream:\n%s", out)
	}
	if out := mustInNS(t, custom.NetNS, "busybox", "nslookup", "example.org", gw); !strings.Contains(out, "192.0.2.20") {
		t.Errorf("forwarded to the container's own --dns server:\n%s", out)
	}
	resolv, _ := os.ReadFile(custom.ResolvConfPath)
	if string(resolv) != "nameserver "+gw+"\nsearch corp.example\noptions ndots:3\n" {
		t.Errorf("resolv.conf:\n%s", resolv)
	}
	hosts, _ := os.ReadFile(custom.HostsPath)
	for _, want := range []string{"10.9.9.9\tdb\n", gw + "\tgw\n", ipOf(ac) + "\tweb.example.org web\n"} {
		if !strings.Contains(string(hosts), want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	if h, _ := os.ReadFile(custom.HostnamePath); string(h) != "web\n" {
		t.Errorf("hostname %q", h)
	}

	// Off any berth network, a container asks the host's servers
	// (loopback ones cannot work from its namespace: the defaults).
	lone := e.sandbox("lone")
	resolv, _ = os.ReadFile(lone.ResolvConfPath)
	if !strings.Contains(string(resolv), "nameserver 8.8.8.8") || !strings.Contains(string(resolv), "search example.test") {
		t.Errorf("resolv.conf without networks:\n%s", resolv)
	}
	host, err := e.m.CreateSandbox(ctx, network.SandboxRequest{ID: "hostnet", HostNetwork: true, ExtraHosts: []string{"extra:10.1.1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if host.NetNS != "" {
		t.Errorf("host network sandbox has a namespace %s", host.NetNS)
	}
	hosts, _ = os.ReadFile(host.HostsPath)
	hostHosts, _ := os.ReadFile("/etc/hosts")
	if !strings.HasPrefix(string(hosts), string(hostHosts)) || !strings.HasSuffix(string(hosts), "10.1.1.1\textra\n") {
		t.Errorf("host network hosts:\n%s", hosts)
	}
	resolv, _ = os.ReadFile(host.ResolvConfPath)
	if !strings.Contains(string(resolv), "nameserver 127.0.0.1") {
		t.Errorf("host network resolv.conf keeps the host's servers:\n%s", resolv)
	}
}

func TestDefaultNetworkWrittenOnce(t *testing.T) {
	t.Parallel()
	bridge := randomName("bt")
	subnet := randomSubnet(t)
	e := newEnv(t, func(c *Config) { c.DefaultNetwork, c.DefaultBridge, c.DefaultSubnet = "berth", bridge, subnet })
	nets, err := e.m.Networks(nsCtx())
	if err != nil || len(nets) != 1 {
		t.Fatalf("networks = %v, %v", nets, err)
	}
	d := nets[0]
	if !d.Default || !d.Managed() || d.DNS || d.Bridge != bridge || d.Subnets[0].Subnet.String() != subnet || !d.Ports {
		t.Errorf("default network = %+v", d)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.ConfDir, "berth-berth.conflist")); err != nil {
		t.Error(err)
	}
	if err := e.m.RemoveNetwork(nsCtx(), "berth"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("remove the default network: %v", err)
	}
	e.restart()
	again, _ := e.m.Networks(nsCtx())
	if len(again) != 1 || again[0].ID != d.ID {
		t.Errorf("restart rewrote the default network: %v", again)
	}
	sb := e.sandbox("d1")
	// No network named: the default one.
	a := e.attach(network.AttachRequest{ContainerID: "d1"})
	if a.Network != "berth" {
		t.Errorf("attached to %q, want the default network", a.Network)
	}
	mustInNS(t, sb.NetNS, "busybox", "ping", "-c1", "-W3", a.IPs[0].Gateway.String())
	resolv, _ := os.ReadFile(sb.ResolvConfPath)
	if strings.Contains(string(resolv), a.IPs[0].Gateway.String()) {
		t.Errorf("the default network has no embedded DNS, yet resolv.conf names its gateway:\n%s", resolv)
	}
}

func TestThirdPartyConflist(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name := randomName("ext")
	bridge := randomName("bx")
	subnet := randomSubnet(t)
	ipam := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"bridge","bridge":%q,"isGateway":true,"ipam":{"type":"host-local","subnet":%q,"dataDir":%q}},{"type":"tuning","sysctl":{"net.ipv4.conf.eth0.send_redirects":"0"}}]}`, name, bridge, subnet, ipam)
	path := filepath.Join(e.cfg.ConfDir, "50-ext.conflist")
	os.WriteFile(path, []byte(conf), 0o644)
	os.WriteFile(filepath.Join(e.cfg.ConfDir, "60-broken.conflist"), []byte("{not json"), 0o644)
	t.Cleanup(func() { deleteLink(bridge) })

	n, err := e.m.Network(nsCtx(), name)
	if err != nil {
		t.Fatal(err)
	}
	if n.Source != path || n.Managed() || n.Driver != "bridge" || n.Bridge != bridge || n.Subnets[0].Subnet.String() != subnet || n.Ports {
		t.Errorf("third-party network = %+v", n)
	}
	if len(n.Plugins) != 2 || n.Plugins[1] != "tuning" {
		t.Errorf("plugins = %v", n.Plugins)
	}
	sb := e.sandbox("x")
	a := e.attach(network.AttachRequest{ContainerID: "x", Network: name})
	if out := mustInNS(t, sb.NetNS, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, ipOf(a)) {
		t.Errorf("interface:\n%s", out)
	}
	if err := e.m.RemoveNetwork(nsCtx(), name); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), path) {
		t.Errorf("remove a third-party network: %v", err)
	}
	// DEL uses the configuration of the ADD, even after the file is gone.
	os.Remove(path)
	if err := e.m.Detach(nsCtx(), "x", name); err != nil {
		t.Errorf("detach after the file went away: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(ipam, name)); len(entries) > 2 {
		t.Errorf("lease left: %v", entries)
	}
}

func TestMacvlanNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	parent := randomName("bm")
	if out, err := execOut("ip", "link", "add", parent, "type", "dummy"); err != nil {
		t.Skipf("cannot make a dummy parent interface: %v %s", err, out)
	}
	t.Cleanup(func() { deleteLink(parent) })
	execOut("ip", "link", "set", parent, "up")
	n := e.createNetwork(network.CreateRequest{Driver: network.DriverMacvlan, Options: map[string]string{"parent": parent, "mode": "bridge"}})
	if n.DNS || n.Ports || n.Driver != network.DriverMacvlan {
		t.Errorf("macvlan network = %+v", n)
	}
	s1, _ := e.sandbox("m1"), e.sandbox("m2")
	e.attach(network.AttachRequest{ContainerID: "m1", Network: n.Name})
	a2 := e.attach(network.AttachRequest{ContainerID: "m2", Network: n.Name})
	mustInNS(t, s1.NetNS, "busybox", "ping", "-c1", "-W3", ipOf(a2))
	ps, _ := network.ParsePorts("80")
	if _, err := e.m.Attach(nsCtx(), network.AttachRequest{ContainerID: "m1", Network: n.Name, IfName: "eth3", NetNS: s1.NetNS, Ports: ps}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ports on macvlan: %v", err)
	}
}

func TestFixedAddressAndMAC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.createNetwork(network.CreateRequest{})
	sb := e.sandbox("fixed")
	want := n.Subnets[0].Subnet.Addr().Next().Next().Next().Next() // .4
	a := e.attach(network.AttachRequest{ContainerID: "fixed", Network: n.Name, IP: want, MAC: "02:42:ac:11:00:99"})
	if ipOf(a) != want.String() {
		t.Errorf("address %s, want %s", ipOf(a), want)
	}
	if out := mustInNS(t, sb.NetNS, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "02:42:ac:11:00:99") {
		t.Errorf("MAC not set:\n%s", out)
	}
	if _, err := e.m.Attach(nsCtx(), network.AttachRequest{ContainerID: "other", NetNS: sb.NetNS, IfName: "eth1", Network: n.Name, IP: netip.MustParseAddr("192.0.2.1")}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("address outside the subnet: %v", err)
	}
}

func TestSandboxRemovalDetachesEverything(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n1 := e.createNetwork(network.CreateRequest{})
	n2 := e.createNetwork(network.CreateRequest{})
	sb := e.sandbox("gone")
	ps, _ := network.ParsePorts("80")
	e.attach(network.AttachRequest{ContainerID: "gone", Network: n1.Name, Ports: ps})
	e.attach(network.AttachRequest{ContainerID: "gone", Network: n2.Name})
	if err := e.m.RemoveSandbox(nsCtx(), "gone"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveSandbox(nsCtx(), "gone"); err != nil {
		t.Errorf("second RemoveSandbox: %v", err)
	}
	if _, err := os.Stat(sb.NetNS); !os.IsNotExist(err) {
		t.Errorf("namespace file left: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(sb.HostsPath)); !os.IsNotExist(err) {
		t.Errorf("sandbox files left: %v", err)
	}
	if atts, _ := e.m.Attachments(nsCtx(), network.AttachmentFilter{ContainerID: "gone"}); len(atts) != 0 {
		t.Errorf("attachments left: %v", atts)
	}
	for _, n := range []*network.Network{n1, n2} {
		if got := leaseFiles(t, e, n.Name); got != 0 {
			t.Errorf("%d leases left on %s", got, n.Name)
		}
		if rules := rulesMentioning(t, n.Name, n.Bridge, networkChain(n.Bridge)); len(rules) != 0 {
			t.Errorf("rules left for %s:\n%s", n.Name, strings.Join(rules, "\n"))
		}
	}
	if _, err := e.m.Sandbox(nsCtx(), "gone"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("sandbox record left: %v", err)
	}
}

// foreignRoute is a host route on an interface the tests did not make.
func foreignRoute() *hostRoute {
	for _, r := range hostRoutes() {
		if !strings.HasPrefix(r.dev, "berth") && !strings.HasPrefix(r.dev, "b") {
			return &r
		}
	}
	return nil
}

func execOut(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// rulesMentioning returns the iptables rules (filter and nat) whose text
// has any of words.
func rulesMentioning(t testing.TB, words ...string) []string {
	t.Helper()
	var out []string
	for _, table := range []string{"filter", "nat"} {
		s, err := iptables("-t", table, "-S")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(s, "\n") {
			for _, w := range words {
				if w != "" && strings.Contains(line, w) {
					out = append(out, table+": "+line)
					break
				}
			}
		}
	}
	return out
}

func TestRemoveAndPruneNetworks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	used := e.createNetwork(network.CreateRequest{})
	idle := e.createNetwork(network.CreateRequest{})
	e.sandbox("u")
	e.attach(network.AttachRequest{ContainerID: "u", Network: used.Name})
	// idle had a container once: its bridge exists.
	e.sandbox("once")
	e.attach(network.AttachRequest{ContainerID: "once", Network: idle.Name})
	if err := e.m.RemoveSandbox(nsCtx(), "once"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", idle.Bridge)); err != nil {
		t.Fatalf("bridge of the idle network: %v", err)
	}
	removed, err := e.m.PruneNetworks(nsCtx())
	if err != nil || len(removed) != 1 || removed[0] != idle.Name {
		t.Fatalf("prune = %v, %v; want only %s", removed, err, idle.Name)
	}
	if _, err := os.Stat(idle.File); !os.IsNotExist(err) {
		t.Errorf("configuration file left: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", idle.Bridge)); !os.IsNotExist(err) {
		t.Errorf("bridge left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.m.ipamDir(), idle.Name)); !os.IsNotExist(err) {
		t.Errorf("address data left: %v", err)
	}
	if _, err := e.m.Network(nsCtx(), idle.Name); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("pruned network still found: %v", err)
	}
	// Its subnet is free again.
	again := e.createNetwork(network.CreateRequest{Subnet: idle.Subnets[0].Subnet.String()})
	if err := e.m.RemoveNetwork(nsCtx(), again.ID[:12]); err != nil {
		t.Errorf("remove by ID prefix: %v", err)
	}
	if err := e.m.Detach(nsCtx(), "u", used.Name); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveNetwork(nsCtx(), used.Name); err != nil {
		t.Fatal(err)
	}
	if nets, _ := e.m.Networks(nsCtx()); len(nets) != 0 {
		t.Errorf("networks left: %v", nets)
	}
}
