package berthcontainers

import (
	"reflect"
	"testing"

	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/run"
	api "github.com/berthd/berth/proto/berth/containers/v1"
)

// Ports written back as -p specs parse to the same mappings.
func TestPortSpecRoundTrip(t *testing.T) {
	specs := []string{"8080:80", "127.0.0.1::53/udp", "9000-9009:443", "[::1]:7000:70/sctp", "5000", "10.0.0.1:8000-8002:80-82/tcp"}
	ms, err := network.ParsePorts(specs...)
	if err != nil {
		t.Fatal(err)
	}
	var again []string
	for _, p := range run.PortsFromMappings(ms) {
		again = append(again, portSpec(p))
	}
	back, err := network.ParsePorts(again...)
	if err != nil || !reflect.DeepEqual(back, ms) {
		t.Errorf("specs %q gave %+v (%v), want %+v", again, back, err, ms)
	}
}

func TestNetworkFromProto(t *testing.T) {
	var o run.Options
	err := networkFromProto(&api.Config{
		Networks: []string{"front", "back"}, Publish: []string{"80"}, NetworkAliases: []string{"web"},
		Dns: []string{"192.0.2.53"}, Ip: "10.1.0.5", MacAddress: "02:42:ac:11:00:02", PublishAll: true,
	}, &o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Network.Aliases, map[string][]string{"front": {"web"}}) || len(o.Ports) != 1 || o.Ports[0].ContainerPort != 80 ||
		o.Network.IP != "10.1.0.5" || !o.Network.PublishAll || !reflect.DeepEqual(o.Networks, []string{"front", "back"}) {
		t.Errorf("options %+v", o)
	}
	var c api.Config
	networkToProto(o, &c)
	if !reflect.DeepEqual(c.NetworkAliases, []string{"web"}) || !reflect.DeepEqual(c.Publish, []string{"80/tcp"}) || c.MacAddress != o.Network.MAC {
		t.Errorf("config back %+v", &c)
	}
	if err := networkFromProto(&api.Config{Publish: []string{"80:80:80:80"}}, &o); err == nil {
		t.Error("a bad port spec was taken")
	}
}
