package run

import (
	"context"
	"os"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/network"
)

func TestPortMappingsRoundTrip(t *testing.T) {
	ms, err := network.ParsePorts("8080:80", "127.0.0.1::53/udp", "9000-9009:443", "[::1]:7000:70/sctp", "5000")
	if err != nil {
		t.Fatal(err)
	}
	ports := PortsFromMappings(ms)
	want := []Port{
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		{HostIP: "127.0.0.1", ContainerPort: 53, Protocol: "udp"},
		{HostPort: 9000, HostPortEnd: 9009, ContainerPort: 443, Protocol: "tcp"},
		{HostIP: "::1", HostPort: 7000, ContainerPort: 70, Protocol: "sctp"},
		{ContainerPort: 5000, Protocol: "tcp"},
	}
	if !reflect.DeepEqual(ports, want) {
		t.Fatalf("ports %+v\nwant %+v", ports, want)
	}
	back, err := PortMappings(ports)
	if err != nil || !reflect.DeepEqual(back, ms) {
		t.Errorf("back to mappings: %+v, %v\nwant %+v", back, err, ms)
	}
}

func TestPortMappingsErrors(t *testing.T) {
	for _, ps := range [][]Port{
		{{HostIP: "nope", ContainerPort: 80, Protocol: "tcp"}},
		{{HostPort: 70000, ContainerPort: 80, Protocol: "tcp"}},
		{{ContainerPort: 0, Protocol: "tcp"}},
		{{ContainerPort: 80, Protocol: "icmp"}},
		{{HostPort: 80, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 80, ContainerPort: 81, Protocol: "tcp"}},
	} {
		if _, err := PortMappings(ps); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%+v: %v, want invalid argument", ps, err)
		}
	}
}

func TestExposedPorts(t *testing.T) {
	img := ocispec.ImageConfig{ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}, "9090": {}, "x/tcp": {}, "70000/tcp": {}}}
	have := []Port{{HostPort: 80, ContainerPort: 8080, Protocol: "tcp"}}
	got := exposedPorts(img, have)
	want := []Port{{ContainerPort: 53, Protocol: "udp"}, {ContainerPort: 9090, Protocol: "tcp"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("exposed ports %+v, want %+v (8080/tcp already published, malformed ones skipped)", got, want)
	}
}

// A berthd without the network plugin (not root) runs containers with
// a bare namespace, or the host's network; it refuses what needs the
// plugin.
func TestPrepareNetworkWithoutPlugin(t *testing.T) {
	m := New(ManagerOptions{})
	defer m.Close()
	ctx := namespaces.WithNamespace(context.Background(), "default")

	o := Options{}
	if err := m.prepareNetwork(ctx, &o, ocispec.ImageConfig{}); err != nil || len(o.Networks) != 0 {
		t.Errorf("no network named: %v, networks %v", err, o.Networks)
	}
	o = Options{Networks: []string{NetworkHost}, Ports: []Port{{ContainerPort: 80, Protocol: "tcp"}}}
	if err := m.prepareNetwork(ctx, &o, ocispec.ImageConfig{}); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if o.Hostname != host || o.Ports != nil {
		t.Errorf("host network: hostname %q (want %q), ports %v (want none)", o.Hostname, host, o.Ports)
	}
	for _, c := range []struct {
		o     Options
		check func(error) bool
	}{
		{Options{Networks: []string{"front"}}, errdefs.IsFailedPrecondition},
		{Options{Ports: []Port{{ContainerPort: 80, Protocol: "tcp"}}}, errdefs.IsFailedPrecondition},
		{Options{Networks: []string{NetworkNone}, Ports: []Port{{ContainerPort: 80, Protocol: "tcp"}}}, errdefs.IsInvalidArgument},
		{Options{Networks: []string{NetworkNone, NetworkHost}}, errdefs.IsInvalidArgument},
		{Options{Networks: []string{"container:"}}, errdefs.IsInvalidArgument},
		{Options{Networks: []string{NetworkNone}, Network: NetworkOptions{Aliases: map[string][]string{NetworkNone: {"a"}}}}, errdefs.IsInvalidArgument},
		{Options{Networks: []string{NetworkHost}, Network: NetworkOptions{MAC: "02:42:ac:11:00:02"}}, errdefs.IsInvalidArgument},
		{Options{Network: NetworkOptions{MAC: "zz"}}, errdefs.IsInvalidArgument},
		{Options{Network: NetworkOptions{DNS: []string{"nope"}}}, errdefs.IsInvalidArgument},
		{Options{Network: NetworkOptions{ExtraHosts: []string{"noaddress"}}}, errdefs.IsInvalidArgument},
	} {
		o := c.o
		if err := m.prepareNetwork(ctx, &o, ocispec.ImageConfig{}); !c.check(err) {
			t.Errorf("%+v: %v", c.o, err)
		}
	}
}

func TestSameHostPort(t *testing.T) {
	held := network.PortMapping{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}
	for _, c := range []struct {
		want network.PortMapping
		same bool
	}{
		{network.PortMapping{HostPort: 8080, ContainerPort: 81, Protocol: "tcp"}, true},
		{network.PortMapping{HostPort: 8080, ContainerPort: 81, Protocol: "udp"}, false},
		{network.PortMapping{HostPort: 8075, HostPortEnd: 8085, ContainerPort: 81, Protocol: "tcp"}, true},
		{network.PortMapping{ContainerPort: 80, Protocol: "tcp"}, false},
	} {
		if got := sameHostPort(held, c.want); got != c.same {
			t.Errorf("%+v against %+v: %v", c.want, held, got)
		}
	}
}
