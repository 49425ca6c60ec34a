package cni

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/core/netns"
	"github.com/berthd/berth/core/network"
)

// masqRule is berth's masquerade rule of a network, as iptables-save
// prints it.
func masqRule(n *network.Network) string {
	return "-A " + postroutingChain + " -s " + n.Subnets[0].Subnet.String() + " ! -o " + n.Bridge + " -j MASQUERADE"
}

// outside is a namespace standing for a host beyond this one: joined to
// the host by a veth pair on a free private /24, so traffic to it stays
// on this machine.
type outside struct {
	netns  string
	hostIP string // the host's end of the pair
	addr   string // the namespace's end
}

func newOutside(t *testing.T) outside {
	t.Helper()
	dir, err := os.MkdirTemp("", "bo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := outside{netns: filepath.Join(dir, "ns")}
	if err := netns.Create(o.netns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Remove(o.netns) })
	subnet := netip.MustParsePrefix(randomSubnet(t))
	host, peer := subnet.Addr().Next(), subnet.Addr().Next().Next()
	o.hostIP, o.addr = host.String(), peer.String()
	hostIf, nsIf := randomName("vh"), randomName("vo")
	if out, err := execOut("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf); err != nil {
		t.Fatalf("veth pair: %v: %s", err, out)
	}
	// Deleting one end deletes both.
	t.Cleanup(func() { deleteLink(hostIf) })
	for _, args := range [][]string{
		{"link", "set", nsIf, "netns", o.netns},
		{"addr", "add", host.String() + "/24", "dev", hostIf},
		{"link", "set", hostIf, "up"},
	} {
		if out, err := execOut("ip", args...); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	mustInNS(t, o.netns, "ip", "addr", "add", peer.String()+"/24", "dev", nsIf)
	mustInNS(t, o.netns, "ip", "link", "set", nsIf, "up")
	return o
}

// servePeer serves HTTP on addr inside a namespace, answering each
// request with the address of its client; it returns host:port.
func servePeer(t *testing.T, nsPath, addr string) string {
	t.Helper()
	var l net.Listener
	// The socket belongs to the namespace it was made in; serving it
	// from any thread afterwards is fine.
	if err := netns.Do(nsPath, func() error {
		var err error
		l, err = net.Listen("tcp4", net.JoinHostPort(addr, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		w.Write([]byte(host))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// peerSeen connects from a namespace to a servePeer server over TCP and
// returns the client address the server saw.
func peerSeen(t *testing.T, from, server string) string {
	t.Helper()
	return mustInNS(t, from, "busybox", "wget", "-q", "-O", "-", "http://"+server+"/")
}

// Outbound traffic of a managed network leaves with the host's address
// through berth's one rule per network; traffic within it keeps its
// source.
func TestMasqueradeOutbound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.createNetwork(network.CreateRequest{})
	if !masquerades(n) {
		t.Fatalf("a new bridge network is not masqueraded by berth:\n%s", n.Config)
	}
	sa, sb := e.sandbox("mq1"), e.sandbox("mq2")
	aa := e.attach(network.AttachRequest{ContainerID: "mq1", Network: n.Name})
	ab := e.attach(network.AttachRequest{ContainerID: "mq2", Network: n.Name})
	nat := rulesMentioning(t, masqRule(n))
	if len(nat) != 1 {
		t.Errorf("berth's masquerade rule of %s: %q", n.Name, nat)
	}
	// Nor the bridge plugin's per-container chain.
	if rules := rulesMentioning(t, cniID("test", "mq1")); len(rules) != 0 {
		t.Errorf("the bridge plugin masquerades too:\n%s", strings.Join(rules, "\n"))
	}

	o := newOutside(t)
	if got := peerSeen(t, sa.NetNS, servePeer(t, o.netns, o.addr)); got != o.hostIP {
		t.Errorf("the outside saw the container as %q, want the host's %s (container %s)", got, o.hostIP, ipOf(aa))
	}
	if got := peerSeen(t, sa.NetNS, servePeer(t, sb.NetNS, ipOf(ab))); got != ipOf(aa) {
		t.Errorf("a container on the same network saw %q, want %s", got, ipOf(aa))
	}

	// Network removal takes the rule with it.
	if err := e.m.RemoveSandbox(nsCtx(), "mq1"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveSandbox(nsCtx(), "mq2"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveNetwork(nsCtx(), n.Name); err != nil {
		t.Fatal(err)
	}
	if rules := rulesMentioning(t, n.Bridge, networkChain(n.Bridge)); len(rules) != 0 {
		t.Errorf("rules left after removing the network:\n%s", strings.Join(rules, "\n"))
	}
}

// A list written before berth masqueraded (the plugin's ipMasq on, no
// flag) keeps the plugin's masquerading, and gets no rule of berth's.
func TestListWithoutMasqueradeFlagKeepsPluginMasquerade(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	subnet := netip.MustParsePrefix(randomSubnet(t))
	meta := berthMeta{ID: newID(), Driver: network.DriverBridge, Options: map[string]string{network.OptionBridge: randomName("bt")}, Created: time.Now().UTC()}
	data, err := managedList(randomName("old"), meta, subnet, subnet.Addr().Next(), e.m.ipamDir())
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	delete(list["berth"].(map[string]any), "masquerade")
	list["plugins"].([]any)[0].(map[string]any)["ipMasq"] = true
	if data, err = json.Marshal(list); err != nil {
		t.Fatal(err)
	}
	name := list["name"].(string)
	if err := os.WriteFile(e.m.confPath(name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := e.m.Network(nsCtx(), name)
	if err != nil {
		t.Fatal(err)
	}
	if masquerades(n) {
		t.Fatal("a list without the flag counts as masqueraded by berth")
	}
	sb := e.sandbox("old1")
	e.attach(network.AttachRequest{ContainerID: "old1", Network: name})
	if rules := rulesMentioning(t, " ! -o "+n.Bridge+" -j MASQUERADE"); len(rules) != 0 {
		t.Errorf("berth masquerades a list whose plugin does:\n%s", strings.Join(rules, "\n"))
	}
	if rules := rulesMentioning(t, cniID("test", "old1")); len(rules) == 0 {
		t.Error("the bridge plugin made no masquerade rule")
	}
	o := newOutside(t)
	if got := peerSeen(t, sb.NetNS, servePeer(t, o.netns, o.addr)); got != o.hostIP {
		t.Errorf("the outside saw the container as %q, want the host's %s", got, o.hostIP)
	}
	if err := e.m.RemoveSandbox(nsCtx(), "old1"); err != nil {
		t.Fatal(err)
	}
	if rules := rulesMentioning(t, cniID("test", "old1"), n.Bridge); len(rules) != 0 {
		t.Errorf("rules left:\n%s", strings.Join(rules, "\n"))
	}
}

// TestOldListUpgradedAtStart: a list berth wrote before it masqueraded
// its networks itself is rewritten at start (ipMasq off, the flag on);
// a container attached under the old list keeps the plugin's masquerade
// until it goes, one attached after the upgrade gets berth's, and both
// reach the outside as the host.
func TestOldListUpgradedAtStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	subnet := netip.MustParsePrefix(randomSubnet(t))
	meta := berthMeta{ID: newID(), Driver: network.DriverBridge, Options: map[string]string{network.OptionBridge: randomName("bt")}, Created: time.Now().UTC()}
	data, err := managedList(randomName("up"), meta, subnet, subnet.Addr().Next(), e.m.ipamDir())
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	delete(list["berth"].(map[string]any), "masquerade")
	list["plugins"].([]any)[0].(map[string]any)["ipMasq"] = true
	if data, err = json.Marshal(list); err != nil {
		t.Fatal(err)
	}
	name := list["name"].(string)
	if err := os.WriteFile(e.m.confPath(name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	oldSB := e.sandbox("before")
	e.attach(network.AttachRequest{ContainerID: "before", Network: name})

	e.restart()
	n, err := e.m.Network(nsCtx(), name)
	if err != nil {
		t.Fatal(err)
	}
	if !masquerades(n) || strings.Contains(string(n.Config), `"ipMasq": true`) {
		t.Fatalf("list not upgraded:\n%s", n.Config)
	}
	if info, err := os.Stat(e.m.confPath(name)); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("upgraded file: %v %v", info, err)
	}
	if rules := rulesMentioning(t, " ! -o "+n.Bridge+" -j MASQUERADE"); len(rules) != 1 {
		t.Errorf("berth's masquerade rule after the upgrade: %q", rules)
	}
	newSB := e.sandbox("after")
	e.attach(network.AttachRequest{ContainerID: "after", Network: name})
	if rules := rulesMentioning(t, cniID("test", "after")); len(rules) != 0 {
		t.Errorf("the plugin masquerades a container attached after the upgrade:\n%s", strings.Join(rules, "\n"))
	}
	o := newOutside(t)
	server := servePeer(t, o.netns, o.addr)
	for _, sb := range []*network.Sandbox{oldSB, newSB} {
		if got := peerSeen(t, sb.NetNS, server); got != o.hostIP {
			t.Errorf("the outside saw %s as %q, want the host's %s", sb.ID, got, o.hostIP)
		}
	}
	for _, id := range []string{"before", "after"} {
		if err := e.m.RemoveSandbox(nsCtx(), id); err != nil {
			t.Fatal(err)
		}
	}
	if rules := rulesMentioning(t, cniID("test", "before"), cniID("test", "after"), n.Bridge); len(rules) != 0 {
		t.Errorf("rules left:\n%s", strings.Join(rules, "\n"))
	}
}

// cycle runs a container's network life: sandbox, attachment, removal.
func cycle(t *testing.T, e *testEnv, id string, n *network.Network) {
	t.Helper()
	e.sandbox(id)
	e.attach(network.AttachRequest{ContainerID: id, Network: n.Name})
	if err := e.m.RemoveSandbox(nsCtx(), id); err != nil {
		t.Fatal(err)
	}
}

func pendingDrops(e *testEnv) int {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	return len(e.m.drops)
}

// A network's rules outlive its last attachment for the grace, so
// back-to-back runs keep them; they go when it ends, or when the manager
// closes.
func TestRulesOutliveLastAttachmentForTheGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setGrace(time.Hour)
	n := e.createNetwork(network.CreateRequest{})
	ours := func() []string { return rulesMentioning(t, n.Bridge, networkChain(n.Bridge)) }

	cycle(t, e, "g1", n)
	kept := ours()
	if len(kept) == 0 || pendingDrops(e) != 1 {
		t.Fatalf("after the last detach: rules %q, %d drops pending", kept, pendingDrops(e))
	}
	if !slices.Contains(kept, "nat: "+masqRule(n)) {
		t.Errorf("the masquerade rule went before the grace ended:\n%s", strings.Join(kept, "\n"))
	}
	// The next attachment cancels the drop and keeps the rules as they
	// are.
	e.sandbox("g2")
	e.attach(network.AttachRequest{ContainerID: "g2", Network: n.Name})
	if pendingDrops(e) != 0 {
		t.Error("an attachment left its network's drop pending")
	}
	if got := ours(); !slices.Equal(got, kept) {
		t.Errorf("rules changed by a new attachment:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(kept, "\n"))
	}
	if err := e.m.RemoveSandbox(nsCtx(), "g2"); err != nil {
		t.Fatal(err)
	}
	if got := ours(); !slices.Equal(got, kept) {
		t.Errorf("rules changed by the second detach:\n%s", strings.Join(got, "\n"))
	}

	// A closing manager does the pending drop.
	e.m.Close()
	if got := ours(); len(got) != 0 {
		t.Errorf("rules left by a closed manager:\n%s", strings.Join(got, "\n"))
	}

	// The drop happens by itself when the grace ends.
	e.grace = 10 * time.Millisecond
	e.m = e.open()
	cycle(t, e, "g3", n)
	for deadline := time.Now().Add(20 * time.Second); len(ours()) != 0 || pendingDrops(e) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("rules still there after the grace:\n%s", strings.Join(ours(), "\n"))
		}
	}
}

// Network removal does not wait for the grace.
func TestRemoveNetworkDuringTheGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setGrace(time.Hour)
	n := e.createNetwork(network.CreateRequest{})
	cycle(t, e, "rg", n)
	if err := e.m.RemoveNetwork(nsCtx(), n.Name); err != nil {
		t.Fatal(err)
	}
	if rules := rulesMentioning(t, n.Bridge, networkChain(n.Bridge)); len(rules) != 0 || pendingDrops(e) != 0 {
		t.Errorf("after removal: %d drops pending, rules:\n%s", pendingDrops(e), strings.Join(rules, "\n"))
	}
	// A network of the same name starts afresh.
	again := e.createNetwork(network.CreateRequest{Name: n.Name})
	cycle(t, e, "rg2", again)
	if !slices.Contains(rulesMentioning(t, masqRule(again)), "nat: "+masqRule(again)) {
		t.Error("a recreated network got no rules")
	}
}

func TestNatLines(t *testing.T) {
	n := &network.Network{
		Name: "n", Source: network.SourceBerth, Bridge: "br1", Driver: network.DriverBridge,
		Subnets: []network.Subnet{{Subnet: netip.MustParsePrefix("10.9.0.0/24")}},
		Config:  []byte(`{"berth":{"masquerade":true}}`),
	}
	rule := "-A BERTH-POSTROUTING -s 10.9.0.0/24 ! -o br1 -j MASQUERADE"
	stale := "-A BERTH-POSTROUTING -s 10.8.0.0/24 ! -o br1 -j MASQUERADE"
	other := "-A BERTH-POSTROUTING -s 10.7.0.0/24 ! -o br10 -j MASQUERADE"
	save := func(rules ...string) tableState {
		return parseSave("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j X\nCOMMIT\n*nat\n:POSTROUTING ACCEPT [0:0]\n:BERTH-POSTROUTING - [0:0]\n-A POSTROUTING -j BERTH-POSTROUTING\n" + strings.Join(rules, "\n") + "\nCOMMIT\n").nat
	}
	for _, c := range []struct {
		name string
		n    *network.Network
		st   tableState
		want []string
	}{
		{"empty table", n, parseSave("*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n").nat,
			[]string{":BERTH-POSTROUTING - [0:0]", "-A POSTROUTING -j BERTH-POSTROUTING", rule}},
		{"in place", n, save(rule, other), nil},
		{"duplicate", n, save(rule, rule), []string{"-D BERTH-POSTROUTING -s 10.9.0.0/24 ! -o br1 -j MASQUERADE"}},
		{"subnet edited", n, save(stale), []string{"-D BERTH-POSTROUTING -s 10.8.0.0/24 ! -o br1 -j MASQUERADE", rule}},
		{"plugin masquerades", &network.Network{Source: network.SourceBerth, Bridge: "br1", Subnets: n.Subnets, Config: []byte(`{"berth":{}}`)}, save(rule, other),
			[]string{"-D BERTH-POSTROUTING -s 10.9.0.0/24 ! -o br1 -j MASQUERADE"}},
		{"internal", &network.Network{Source: network.SourceBerth, Bridge: "br1", Internal: true, Subnets: n.Subnets, Config: n.Config}, save(other), nil},
	} {
		if got := natLines(c.n, c.st); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if st := save(rule); !st.chains[postroutingChain] || st.rules[rule] != 1 || st.rules["-A FORWARD -j X"] != 0 {
		t.Errorf("parseSave mixed up tables: %+v", st)
	}
}
