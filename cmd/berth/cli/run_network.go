package cli

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/berthd/berth/core/network"
	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

// netFlags are the network settings of `berth create` and `berth run`.
type netFlags struct {
	networks, publish, aliases          []string
	dns, dnsSearch, dnsOptions, addHost []string
	ip, mac                             string
	publishAll                          bool
}

// networkFlagAliases are docker's other names of the network flags.
var networkFlagAliases = map[string]string{"net": "network", "net-alias": "network-alias", "dns-opt": "dns-option"}

func (f *netFlags) register(fl *pflag.FlagSet) {
	fl.StringArrayVar(&f.networks, "network", nil, "network to join (repeatable), or host, none, container:<name|id> (default: berthd's default network)")
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a port: [hostIP:][hostPort:]containerPort[/tcp|udp|sctp] (no host port: a free one)")
	fl.BoolVarP(&f.publishAll, "publish-all", "P", false, "publish every port the image exposes on free host ports")
	fl.StringArrayVar(&f.aliases, "network-alias", nil, "another name of the container on its (user-defined) network")
	fl.StringArrayVar(&f.dns, "dns", nil, "DNS server for the container (instead of the host's)")
	fl.StringArrayVar(&f.dnsSearch, "dns-search", nil, "DNS search domain")
	fl.StringArrayVar(&f.dnsOptions, "dns-option", nil, "resolv.conf option (ndots:2, ...)")
	fl.StringArrayVar(&f.addHost, "add-host", nil, "add name:ip to /etc/hosts (ip may be host-gateway)")
	fl.StringVar(&f.ip, "ip", "", "fixed IPv4 address on the first network")
	fl.StringVar(&f.mac, "mac-address", "", "fixed MAC address on the first network")
	next := fl.GetNormalizeFunc()
	fl.SetNormalizeFunc(func(fs *pflag.FlagSet, name string) pflag.NormalizedName {
		if to, ok := networkFlagAliases[name]; ok {
			name = to
		}
		return next(fs, name)
	})
}

// apply checks the flags and writes them into cfg. Mistakes are caught
// here, before any image is pulled, with exit code 125; berthd checks
// again what needs its networks.
func (f *netFlags) apply(cfg *containersapi.Config, hostname string) error {
	if _, err := network.ParsePorts(f.publish...); err != nil {
		return usageError("invalid value for --publish: %v", cleanErr(err))
	}
	for _, h := range f.addHost {
		if _, err := network.ParseExtraHost(h); err != nil {
			return usageError("invalid value for --add-host: %v", cleanErr(err))
		}
	}
	if err := (network.DNSConfig{Servers: f.dns, Search: f.dnsSearch, Options: f.dnsOptions}).Validate(); err != nil {
		return usageError("%v", cleanErr(err))
	}
	if f.ip != "" {
		if a, err := netip.ParseAddr(f.ip); err != nil || !a.Is4() {
			return usageError("invalid value %q for --ip: want an IPv4 address", f.ip)
		}
	}
	if f.mac != "" {
		if _, err := net.ParseMAC(f.mac); err != nil {
			return usageError("invalid value %q for --mac-address: want a MAC address such as 02:42:ac:11:00:02", f.mac)
		}
	}
	if err := f.checkMode(hostname); err != nil {
		return err
	}
	cfg.Networks, cfg.Publish, cfg.PublishAll, cfg.NetworkAliases = f.networks, f.publish, f.publishAll, f.aliases
	cfg.Dns, cfg.DnsSearch, cfg.DnsOptions, cfg.ExtraHosts = f.dns, f.dnsSearch, f.dnsOptions, f.addHost
	cfg.Ip, cfg.MacAddress = f.ip, f.mac
	return nil
}

// printWarnings says what berthd will ignore, as docker does.
func (f *netFlags) printWarnings(w io.Writer) {
	if len(f.networks) == 1 && f.networks[0] == "host" && (len(f.publish) > 0 || f.publishAll) {
		fmt.Fprintln(w, "WARNING: Published ports are discarded when using host network mode")
	}
}

// checkMode refuses what docker refuses with --network container:<x>
// (and the other modes mixed with networks).
func (f *netFlags) checkMode(hostname string) error {
	for _, n := range f.networks {
		if n == "" {
			return usageError("invalid value \"\" for --network: name a network, host, none or container:<name|id>")
		}
		mode := n == "host" || n == "none" || strings.HasPrefix(n, "container:")
		if mode && len(f.networks) > 1 {
			return usageError("conflicting options: --network %s cannot be combined with other networks", n)
		}
	}
	if len(f.networks) != 1 || !strings.HasPrefix(f.networks[0], "container:") {
		return nil
	}
	conflict := func(what string) error {
		return usageError("conflicting options: %s and the network mode %s", what, f.networks[0])
	}
	switch {
	case len(f.publish) > 0 || f.publishAll:
		return conflict("port publishing")
	case hostname != "":
		return conflict("hostname")
	case len(f.dns) > 0 || len(f.dnsSearch) > 0 || len(f.dnsOptions) > 0:
		return conflict("dns")
	case len(f.addHost) > 0:
		return conflict("custom host-to-IP mapping")
	case f.mac != "" || f.ip != "":
		return conflict("a fixed IP or MAC address")
	case len(f.aliases) > 0:
		return conflict("network aliases")
	}
	return nil
}
