package cni

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/network"
)

func TestParseNetworkFiles(t *testing.T) {
	single := `{"cniVersion":"0.4.0","name":"legacy","type":"bridge","bridge":"br9","ipam":{"type":"host-local","subnet":"10.5.0.0/16"}}`
	n, err := parseNetwork([]byte(single), "/etc/cni/10-legacy.conf")
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "legacy" || n.Driver != "bridge" || n.Bridge != "br9" || n.Managed() || n.CNIVersion != "0.4.0" ||
		len(n.Subnets) != 1 || n.Subnets[0].Subnet.String() != "10.5.0.0/16" || n.Subnets[0].Gateway.String() != "10.5.0.1" {
		t.Errorf("single-plugin conf = %+v", n)
	}
	if len(n.ID) != 64 {
		t.Errorf("a file's network gets a stable ID, got %q", n.ID)
	}
	again, _ := parseNetwork([]byte(single), "/etc/cni/10-legacy.conf")
	if again.ID != n.ID {
		t.Error("the ID of a file's network changed between reads")
	}

	meta := berthMeta{ID: strings.Repeat("a", 64), Driver: network.DriverBridge, DNS: true, Labels: map[string]string{"k": "v"}, Options: map[string]string{network.OptionBridge: "berthx"}, Created: time.Unix(1700000000, 0).UTC()}
	data, err := managedList("mine", meta, netip.MustParsePrefix("10.6.0.0/24"), netip.MustParseAddr("10.6.0.1"), "/run/x/ipam")
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseNetwork(data, "/etc/berth/cni/net.d/berth-mine.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if !m.Managed() || m.File != "/etc/berth/cni/net.d/berth-mine.conflist" || m.ID != meta.ID || !m.DNS || m.Bridge != "berthx" || !m.Ports ||
		m.Labels["k"] != "v" || !m.CreatedAt.Equal(meta.Created) || strings.Join(m.Plugins, ",") != "bridge,portmap" {
		t.Errorf("berth's list = %+v", m)
	}
	// berth masquerades the network itself, not the bridge plugin per
	// container.
	if !masquerades(m) || !strings.Contains(string(data), `"masquerade": true`) || !strings.Contains(string(data), `"ipMasq": false`) {
		t.Errorf("a managed IPv4 bridge network is masqueraded by berth, not the plugin:\n%s", data)
	}

	internal := meta
	internal.Internal = true
	data, _ = managedList("int", internal, netip.MustParsePrefix("10.7.0.0/24"), netip.MustParseAddr("10.7.0.1"), "/x")
	in, _ := parseNetwork(data, "f")
	if in.Ports || !in.Internal || masquerades(in) || !strings.Contains(string(data), `"ipMasq": false`) || !strings.Contains(string(data), `"isDefaultGateway": false`) || strings.Contains(string(data), `"masquerade"`) {
		t.Errorf("internal list:\n%s", data)
	}

	for body, want := range map[string]string{
		"{nope":                               "not JSON",
		`{"name":"x","plugins":[]}`:           "no plugins",
		`{"name":"bad name","type":"bridge"}`: "network name",
		`{"name":"x"}`:                        "missing 'type'",
		`{"name":"x","plugins":[{"type":"bridge"}],"berth":"str"}`: "berth metadata",
	} {
		if _, err := parseNetwork([]byte(body), "f"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

func TestConfDirReadsChangesAndSkipsBadFiles(t *testing.T) {
	dir := t.TempDir()
	c := newConfDir(dir)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10-a.conflist", `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}`)
	write("20-dup.conflist", `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"macvlan"}]}`)
	write("30-bad.conflist", `{`)
	write("40-b.json", `{"cniVersion":"1.0.0","name":"b","type":"ptp"}`)
	write("notes.txt", `{"name":"ignored","type":"bridge"}`)
	nets, err := c.networks()
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 2 || nets[0].Name != "a" || nets[0].Driver != "bridge" || nets[1].Name != "b" || nets[1].Driver != "ptp" {
		t.Fatalf("networks = %+v", nets)
	}
	write("10-a.conflist", `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"ipvlan"},{"type":"tuning"}]}`)
	os.Remove(filepath.Join(dir, "40-b.json"))
	nets, _ = c.networks()
	if len(nets) != 1 || nets[0].Driver != "ipvlan" {
		t.Errorf("after changes: %+v", nets)
	}
	if _, err := newConfDir(filepath.Join(dir, "missing")).networks(); err != nil {
		t.Errorf("a missing folder has no networks: %v", err)
	}
}

func TestFindNetwork(t *testing.T) {
	nets := []*network.Network{{Name: "web", ID: "abc123"}, {Name: "db", ID: "abd456"}, {Name: "abd456x", ID: "fff"}}
	for ref, want := range map[string]string{"web": "web", "abc": "web", "abd456": "db", "abd456x": "abd456x", "f": "abd456x"} {
		n, err := findNetwork(nets, ref)
		if err != nil || n.Name != want {
			t.Errorf("%q = %v, %v; want %s", ref, n, err, want)
		}
	}
	if _, err := findNetwork(nets, "ab"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "db, web") {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := findNetwork(nets, "zzz"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
}

func TestSplitRule(t *testing.T) {
	got, err := splitRule(`-A POSTROUTING -s 10.1.0.2/32 -m comment --comment "name: \"n\" id: \"ns--c\"" -j CNI-abc`)
	want := []string{"-A", "POSTROUTING", "-s", "10.1.0.2/32", "-m", "comment", "--comment", `name: "n" id: "ns--c"`, "-j", "CNI-abc"}
	if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("splitRule = %q, %v", got, err)
	}
	if _, err := splitRule(`-A X --comment "open`); err == nil {
		t.Error("unbalanced quotes accepted")
	}
}
