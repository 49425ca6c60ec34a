package network

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParsePorts(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	v6 := netip.MustParseAddr("::1")
	for spec, want := range map[string][]PortMapping{
		"80":                   {{ContainerPort: 80, Protocol: "tcp"}},
		"80/udp":               {{ContainerPort: 80, Protocol: "udp"}},
		"53/UDP":               {{ContainerPort: 53, Protocol: "udp"}},
		"8080:80":              {{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		"0:80":                 {{ContainerPort: 80, Protocol: "tcp"}},
		"127.0.0.1:8080:80":    {{HostIP: lo, HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		"127.0.0.1::80/sctp":   {{HostIP: lo, ContainerPort: 80, Protocol: "sctp"}},
		"[::1]:8080:80":        {{HostIP: v6, HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		"[::1]::80":            {{HostIP: v6, ContainerPort: 80, Protocol: "tcp"}},
		"8000-8001:80-81/udp":  {{HostPort: 8000, ContainerPort: 80, Protocol: "udp"}, {HostPort: 8001, ContainerPort: 81, Protocol: "udp"}},
		"80-81":                {{ContainerPort: 80, Protocol: "tcp"}, {ContainerPort: 81, Protocol: "tcp"}},
		"9000-9009:80":         {{HostPort: 9000, HostPortEnd: 9009, ContainerPort: 80, Protocol: "tcp"}},
		"0.0.0.0:65535:65535":  {{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 65535, ContainerPort: 65535, Protocol: "tcp"}},
		"10.1.2.3:1-2:3-4/tcp": {{HostIP: netip.MustParseAddr("10.1.2.3"), HostPort: 1, ContainerPort: 3, Protocol: "tcp"}, {HostIP: netip.MustParseAddr("10.1.2.3"), HostPort: 2, ContainerPort: 4, Protocol: "tcp"}},
	} {
		got, err := ParsePorts(spec)
		if err != nil {
			t.Errorf("%q: %v", spec, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q = %+v, want %+v", spec, got, want)
		}
	}
}

func TestParsePortsErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                   "empty",
		"0":                  "container port must not be 0",
		"80/icmp":            `protocol "icmp"`,
		"70000":              `"70000" is not a number`,
		"x:80":               `host port "x"`,
		"1.2.3:80:80":        `host address "1.2.3"`,
		"::1:80:80":          "in brackets",
		"[::1]80":            "followed by ':'",
		"[::1]:80":           "want [hostIP]:hostPort:containerPort",
		"8000-8002:80-81":    "has 3 ports but container range 80-81 has 2",
		"90-80":              "ends before it starts",
		"1-2000":             "more than the 1024",
		"fe80::1%eth0:1:1":   "in brackets",
		"[fe80::1%eth0]:1:1": "is not an IP address",
		"0-5:80":             "must not be 0",
		":":                  "container port is empty",
	} {
		_, err := ParsePorts(spec)
		if err == nil {
			t.Errorf("%q: no error", spec)
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: %v is not ErrInvalidArgument", spec, err)
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), spec) {
			t.Errorf("%q: error %q does not name the spec and %q", spec, err, want)
		}
	}
}

func TestParsePortsDuplicates(t *testing.T) {
	for _, specs := range [][]string{
		{"8080:80", "8080:81"},
		{"127.0.0.1:8080:80", "8080:81"},
		{"0.0.0.0:8080:80", "127.0.0.1:8080:81"},
	} {
		if _, err := ParsePorts(specs...); err == nil || !strings.Contains(err.Error(), "published twice") {
			t.Errorf("%v: %v", specs, err)
		}
	}
	for _, specs := range [][]string{
		{"8080:80", "8080:80/udp"},
		{"127.0.0.1:8080:80", "127.0.0.2:8080:80"},
		{"0.0.0.0:8080:80", "[::1]:8080:80"},
		{"80", "80"},
	} {
		if _, err := ParsePorts(specs...); err != nil {
			t.Errorf("%v: %v", specs, err)
		}
	}
}

func TestPortMappingString(t *testing.T) {
	ms, _ := ParsePorts("127.0.0.1:8080:80", "[::1]:9090:90/udp", "7000-7005:70")
	var got []string
	for _, m := range ms {
		got = append(got, m.String())
	}
	want := []string{"127.0.0.1:8080->80/tcp", "[::1]:9090->90/udp", "0.0.0.0:7000-7005->70/tcp"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("String = %v, want %v", got, want)
	}
	if c := ms[2].Candidates(); len(c) != 6 || c[0] != 7000 || c[5] != 7005 {
		t.Errorf("Candidates = %v", c)
	}
}
