package cni

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/containerd/errdefs"
)

// Config is the network plugin's configuration:
// [plugins."io.berth.network.v1.cni"].
type Config struct {
	ConfDir        string   `toml:"conf_dir" comment:"CNI configuration lists (.conflist, .conf, .json): every network berth creates and any a user drops in."`
	BinDirs        []string `toml:"bin_dirs" comment:"Folders searched for CNI plugin binaries."`
	DefaultNetwork string   `toml:"default_network" comment:"Network containers join when they name none; written on first start when absent. Empty: none."`
	DefaultBridge  string   `toml:"default_bridge" comment:"Bridge of the default network."`
	DefaultSubnet  string   `toml:"default_subnet" comment:"IPv4 subnet of the default network."`
	ResolvConf     string   `toml:"resolv_conf" comment:"The host's resolver configuration, source of containers' nameservers and of the embedded DNS's upstream servers."`
	DNSForward     []string `toml:"dns_forward" comment:"Upstream servers (ip or ip:port) for the embedded DNS, instead of resolv_conf's nameservers."`
}

// DefaultConfig is the configuration berthd starts with.
func DefaultConfig() *Config {
	return &Config{
		ConfDir:        "/etc/berth/cni/net.d",
		BinDirs:        []string{"/usr/lib/cni", "/opt/cni/bin"},
		DefaultNetwork: "berth",
		DefaultBridge:  "berth0",
		DefaultSubnet:  "10.88.0.0/16",
		ResolvConf:     "/etc/resolv.conf",
	}
}

func (c *Config) validate() error {
	if !strings.HasPrefix(c.ConfDir, "/") {
		return fmt.Errorf("conf_dir %q must be an absolute path: %w", c.ConfDir, errdefs.ErrInvalidArgument)
	}
	if len(c.BinDirs) == 0 {
		return fmt.Errorf("bin_dirs must name at least one folder: %w", errdefs.ErrInvalidArgument)
	}
	if c.DefaultNetwork != "" {
		if err := validateName(c.DefaultNetwork); err != nil {
			return fmt.Errorf("default_network: %w", err)
		}
		if err := validateBridgeName(c.DefaultBridge); err != nil {
			return fmt.Errorf("default_bridge: %w", err)
		}
		if _, err := parseSubnet(c.DefaultSubnet); err != nil {
			return fmt.Errorf("default_subnet: %w", err)
		}
	}
	if _, err := c.forwarders(); err != nil {
		return err
	}
	return nil
}

// forwarders parses DNSForward; nil means "use resolv_conf".
func (c *Config) forwarders() ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range c.DNSForward {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("dns_forward %q is not ip or ip:port: %w", s, errdefs.ErrInvalidArgument)
		}
		out = append(out, netip.AddrPortFrom(a, 53))
	}
	return out, nil
}
