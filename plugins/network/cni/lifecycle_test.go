package cni

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/core/netns"
	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/internal/testutil/daemon"
)

// footprint is what attachments leave on the host, counted for one
// network: rules naming it (or its bridge or chain), leases, veths on its
// bridge, namespace mounts under the state folder.
type footprint struct {
	rules, leases, veths, mounts int
}

func measure(t testing.TB, e *testEnv, n *network.Network) footprint {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join("/sys/class/net", n.Bridge, "brif"))
	return footprint{
		rules:  len(rulesMentioning(t, `"`+n.Name+`"`, n.Bridge, networkChain(n.Bridge))),
		leases: leaseFiles(t, e, n.Name),
		veths:  len(entries),
		mounts: len(daemon.MountsUnder(e.state)),
	}
}

func TestAttachDetachCyclesLeaveNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The network's rules stay between cycles, as in back-to-back runs.
	e.setGrace(time.Hour)
	n := e.createNetwork(network.CreateRequest{})
	ctx := nsCtx()
	cycles := 100
	if testing.Short() {
		cycles = 10
	}
	before := measure(t, e, n)
	for i := 0; i < cycles; i++ {
		id := fmt.Sprintf("cycle%d", i)
		if _, err := e.m.CreateSandbox(ctx, network.SandboxRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		ps, _ := network.ParsePorts("80", "53/udp")
		if _, err := e.m.Attach(ctx, network.AttachRequest{ContainerID: id, Name: id, Network: n.Name, Ports: ps}); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if i == 0 {
			during := measure(t, e, n)
			if during.rules <= before.rules || during.leases != before.leases+1 || during.veths != before.veths+1 || during.mounts != before.mounts+1 {
				t.Fatalf("an attachment's footprint is not visible: before %+v, during %+v", before, during)
			}
		}
		// Half the cycles detach first, half leave it to the sandbox
		// removal, as the runtime's cleanup does.
		if i%2 == 0 {
			if err := e.m.Detach(ctx, id, n.Name); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
		}
		if err := e.m.RemoveSandbox(ctx, id); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	if kept := measure(t, e, n); kept.rules == 0 || kept.leases != before.leases || kept.veths != before.veths || kept.mounts != before.mounts {
		t.Errorf("during the grace after %d cycles: %+v, before: %+v", cycles, kept, before)
	}
	e.m.flushDrops()
	if after := measure(t, e, n); after != before {
		t.Errorf("after %d cycles: %+v, before: %+v\n%s", cycles, after, before, strings.Join(rulesMentioning(t, `"`+n.Name+`"`, n.Bridge), "\n"))
	}
	if entries, _ := os.ReadDir(filepath.Join(e.state, "cache", "results")); len(entries) != 0 {
		t.Errorf("libcni result cache left %d files", len(entries))
	}
}

func TestRestartKeepsAttachments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.createNetwork(network.CreateRequest{})
	sa, sb := e.sandbox("ra"), e.sandbox("rb")
	ps, _ := network.ParsePorts("8080")
	aa := e.attach(network.AttachRequest{ContainerID: "ra", Name: "web", Network: n.Name, Ports: ps})
	ab := e.attach(network.AttachRequest{ContainerID: "rb", Name: "client", Network: n.Name})
	body := serveHTTP(t, sa.NetNS, 8080)

	e.restart()

	atts, err := e.m.Attachments(nsCtx(), network.AttachmentFilter{ContainerID: "ra"})
	if err != nil || len(atts) != 1 || ipOf(atts[0]) != ipOf(aa) || atts[0].Ports[0] != aa.Ports[0] {
		t.Fatalf("after restart: %v %v", atts, err)
	}
	out := mustInNS(t, sb.NetNS, "busybox", "nslookup", "web", gatewayOf(n))
	if !strings.Contains(out, ipOf(aa)) {
		t.Errorf("DNS after restart:\n%s", out)
	}
	port := aa.Ports[0].HostPort
	if got, err := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || got != body {
		t.Errorf("published port after restart: %q %v", got, err)
	}
	if l, err := net.Listen("tcp", fmt.Sprintf(":%d", port)); err == nil {
		l.Close()
		t.Error("the published port is not reserved again after restart")
	}
	sb2, err := e.m.Sandbox(nsCtx(), "rb")
	if err != nil || sb2.NetNS != sb.NetNS {
		t.Errorf("sandbox after restart: %+v %v", sb2, err)
	}
	// Teardown works from the records alone.
	before := measure(t, e, n)
	if err := e.m.Detach(nsCtx(), "ra", n.Name); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveSandbox(nsCtx(), "rb"); err != nil {
		t.Fatal(err)
	}
	after := measure(t, e, n)
	if after.rules != 0 || after.leases != 0 || after.veths != 0 || after.mounts != before.mounts-1 {
		t.Errorf("after teardown: %+v (before %+v)\n%s", after, before, strings.Join(rulesMentioning(t, `"`+n.Name+`"`, n.Bridge), "\n"))
	}
	_ = ab
}

// A crash in the middle of an ADD leaves a record in the adding state;
// the next start tears the attachment down.
func TestRecoveryUndoesInterruptedAdd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.createNetwork(network.CreateRequest{})
	sb := e.sandbox("half")
	ps, _ := network.ParsePorts("80")
	req := network.AttachRequest{ContainerID: "half", Network: n.Name, Ports: ps}
	rec, err := e.m.beginAttach("test", req, n, sb.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.add(rec, n, req); err != nil {
		t.Fatal(err)
	}
	if measure(t, e, n).leases != 1 {
		t.Fatal("the ADD left no lease")
	}
	// berthd dies here, before recording the result.
	e.restart()
	if f := measure(t, e, n); f.rules != 0 || f.leases != 0 || f.veths != 0 {
		t.Errorf("after recovery: %+v\n%s", f, strings.Join(rulesMentioning(t, `"`+n.Name+`"`, n.Bridge), "\n"))
	}
	if out := mustInNS(t, sb.NetNS, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("interface left:\n%s", out)
	}
	if atts, _ := e.m.Attachments(nsCtx(), network.AttachmentFilter{}); len(atts) != 0 {
		t.Errorf("records left: %v", atts)
	}
}

// A namespace that disappeared while berthd was down (the host's
// cleanup, a crash of the runtime) takes its interfaces with it; the
// next start still frees the lease and the NAT rules DEL cannot find
// without it.
func TestRecoveryAfterNamespaceVanished(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.createNetwork(network.CreateRequest{})
	sb := e.sandbox("vanish")
	ps, _ := network.ParsePorts("80")
	e.attach(network.AttachRequest{ContainerID: "vanish", Network: n.Name, Ports: ps})
	e.m.Close()
	if err := netns.Remove(sb.NetNS); err != nil {
		t.Fatal(err)
	}
	e.m = e.open()
	if f := measure(t, e, n); f.rules != 0 || f.leases != 0 || f.veths != 0 {
		t.Errorf("after recovery: %+v\n%s", f, strings.Join(rulesMentioning(t, cniID("test", "vanish"), `"`+n.Name+`"`, n.Bridge), "\n"))
	}
	if err := e.m.RemoveSandbox(nsCtx(), "vanish"); err != nil {
		t.Errorf("remove the sandbox of a vanished namespace: %v", err)
	}
}
