package network

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestParseResolvConf(t *testing.T) {
	rc := ParseResolvConf([]byte("# comment\nnameserver 127.0.0.53\nnameserver bogus\nnameserver 10.0.0.2 # trailing\ndomain a.example\nsearch b.example c.example\noptions ndots:2\noptions edns0 ; x\n"))
	want := ResolvConf{Nameservers: addrs("127.0.0.53", "10.0.0.2"), Search: []string{"b.example", "c.example"}, Options: []string{"ndots:2", "edns0"}}
	if !reflect.DeepEqual(rc, want) {
		t.Errorf("got %+v, want %+v", rc, want)
	}
	if got := string(want.Bytes()); got != "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch b.example c.example\noptions ndots:2 edns0\n" {
		t.Errorf("Bytes:\n%s", got)
	}
}

func TestContainerResolvConf(t *testing.T) {
	host := ResolvConf{Nameservers: addrs("127.0.0.53", "10.0.0.2"), Search: []string{"corp"}, Options: []string{"ndots:2"}}
	cases := []struct {
		name     string
		user     DNSConfig
		embedded []netip.Addr
		want     ResolvConf
	}{
		{"host servers without loopback", DNSConfig{}, nil, ResolvConf{Nameservers: addrs("10.0.0.2"), Search: []string{"corp"}, Options: []string{"ndots:2"}}},
		{"user servers", DNSConfig{Servers: []string{"1.1.1.1"}, Search: []string{"x.example"}, Options: []string{"timeout:1"}}, nil,
			ResolvConf{Nameservers: addrs("1.1.1.1"), Search: []string{"x.example"}, Options: []string{"timeout:1"}}},
		{"embedded wins over user servers", DNSConfig{Servers: []string{"1.1.1.1"}}, addrs("10.9.0.1"), ResolvConf{Nameservers: addrs("10.9.0.1"), Search: []string{"corp"}, Options: []string{"ndots:2"}}},
		{"dot clears search", DNSConfig{Search: []string{"."}}, nil, ResolvConf{Nameservers: addrs("10.0.0.2"), Options: []string{"ndots:2"}}},
	}
	for _, c := range cases {
		got, err := ContainerResolvConf(host, c.user, c.embedded)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
	got, _ := ContainerResolvConf(ResolvConf{Nameservers: addrs("127.0.0.1")}, DNSConfig{}, nil)
	if !reflect.DeepEqual(got.Nameservers, DefaultNameservers) {
		t.Errorf("loopback-only host: nameservers %v, want the defaults", got.Nameservers)
	}
	if up := Upstreams(host, DNSConfig{}); !reflect.DeepEqual(up, host.Nameservers) {
		t.Errorf("Upstreams without --dns = %v, want the host's including loopback", up)
	}
	if up := Upstreams(host, DNSConfig{Servers: []string{"9.9.9.9"}}); !reflect.DeepEqual(up, addrs("9.9.9.9")) {
		t.Errorf("Upstreams with --dns = %v", up)
	}
}

func TestDNSConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  DNSConfig
		want string
	}{
		{DNSConfig{Servers: []string{"dns.example"}}, `--dns "dns.example" is not an IP address`},
		{DNSConfig{Search: []string{"a b"}}, `--dns-search "a b"`},
		{DNSConfig{Search: []string{strings.Repeat("a", 64) + ".example"}}, "1 to 63 characters"},
		{DNSConfig{Options: []string{"ndots:1 x"}}, "must be one word"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestHostsFile(t *testing.T) {
	db, _ := ParseExtraHost("db:10.1.1.1")
	gw, _ := ParseExtraHost("host.docker.internal:host-gateway")
	v6, _ := ParseExtraHost("six=[2001:db8::1]")
	got := string(HostsFile(HostsConfig{
		Hostname: "web", Domainname: "example.org",
		Addrs:   addrs("10.88.0.5"),
		Extra:   []ExtraHost{db, gw, v6},
		Gateway: netip.MustParseAddr("10.88.0.1"),
	}))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n", "10.1.1.1\tdb\n", "10.88.0.1\thost.docker.internal\n", "2001:db8::1\tsix\n", "10.88.0.5\tweb.example.org web\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts lacks %q:\n%s", want, got)
		}
	}
	got = string(HostsFile(HostsConfig{Hostname: "h", Extra: []ExtraHost{gw}}))
	if strings.Contains(got, "host.docker.internal") {
		t.Errorf("host-gateway with no gateway must be dropped:\n%s", got)
	}
}

func TestExtraHostAndHostnameErrors(t *testing.T) {
	for s, want := range map[string]string{
		"nohost":        "want name:ip",
		":1.2.3.4":      "want name:ip",
		"a b:1.2.3.4":   "name:",
		"db:not-an-ip":  "is not an IP address",
		"db:fe80::1%e0": "is not an IP address",
	} {
		if _, err := ParseExtraHost(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseExtraHost(%q) = %v, want %q", s, err, want)
		}
	}
	for _, h := range []string{strings.Repeat("h", 65), "-h", "h.", "a_b c", ""} {
		if err := ValidateHostname(h); err == nil {
			t.Errorf("hostname %q accepted", h)
		}
	}
	for _, h := range []string{"web", "web-1.example.org", "a1"} {
		if err := ValidateHostname(h); err != nil {
			t.Errorf("hostname %q: %v", h, err)
		}
	}
}

func TestWriteInPlaceKeepsInode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	if err := WriteInPlace(p, []byte("a long first version\n")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	if err := WriteInPlace(p, []byte("short\n")); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Error("WriteInPlace replaced the file; a bind mount would keep the old one")
	}
	if b, _ := os.ReadFile(p); string(b) != "short\n" {
		t.Errorf("contents %q", b)
	}
}
