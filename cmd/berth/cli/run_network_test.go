package cli

import (
	"strings"
	"testing"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func TestSplitPublished(t *testing.T) {
	for spec, want := range map[string][3]string{
		"80/tcp":                 {"", "", "80/tcp"},
		"8080:80/tcp":            {"", "8080", "80/tcp"},
		"127.0.0.1::53/udp":      {"127.0.0.1", "", "53/udp"},
		"[::1]:7000-7005:70/tcp": {"::1", "7000-7005", "70/tcp"},
	} {
		ip, host, cont := splitPublished(spec)
		if [3]string{ip, host, cont} != want {
			t.Errorf("%s: %q %q %q, want %q", spec, ip, host, cont, want)
		}
	}
}

func TestNetFlagsApply(t *testing.T) {
	for _, c := range []struct {
		f        netFlags
		hostname string
		want     string
	}{
		{netFlags{publish: []string{"70000:80"}}, "", "--publish"},
		{netFlags{networks: []string{"container:db"}, publish: []string{"80"}}, "", "port publishing"},
		{netFlags{networks: []string{"container:db"}}, "h", "hostname"},
		{netFlags{networks: []string{"container:db"}, dns: []string{"192.0.2.1"}}, "", "dns"},
		{netFlags{networks: []string{"container:db"}, aliases: []string{"a"}}, "", "network aliases"},
		{netFlags{networks: []string{"host", "front"}}, "", "cannot be combined"},
		{netFlags{networks: []string{""}}, "", "--network"},
		{netFlags{ip: "::1"}, "", "--ip"},
		{netFlags{mac: "nope"}, "", "--mac-address"},
		{netFlags{addHost: []string{"x"}}, "", "--add-host"},
	} {
		err := c.f.apply(&containersapi.Config{}, c.hostname)
		ee, ok := err.(*ExitError)
		if !ok || ee.Code != 125 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want exit 125 mentioning %q", c.f, err, c.want)
		}
	}
	f := netFlags{networks: []string{"front"}, publish: []string{"8080:80"}, aliases: []string{"web"}, dnsSearch: []string{"example.test"}}
	var cfg containersapi.Config
	if err := f.apply(&cfg, ""); err != nil {
		t.Fatal(err)
	}
	if cfg.Networks[0] != "front" || cfg.Publish[0] != "8080:80" || cfg.NetworkAliases[0] != "web" || cfg.DnsSearch[0] != "example.test" {
		t.Errorf("config %+v", &cfg)
	}
}
