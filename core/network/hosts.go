package network

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/containerd/errdefs"
)

// HostGateway is the --add-host address that stands for the host as seen
// from the container: the gateway of its first network.
const HostGateway = "host-gateway"

// ExtraHost is one --add-host entry.
type ExtraHost struct {
	Name string
	// Addr is unset when the entry asked for HostGateway.
	Addr netip.Addr
}

// ParseExtraHost parses "name:ip" or "name=ip"; ip may be HostGateway.
func ParseExtraHost(s string) (ExtraHost, error) {
	i := strings.IndexAny(s, ":=")
	if i <= 0 {
		return ExtraHost{}, fmt.Errorf("--add-host %q: want name:ip: %w", s, errdefs.ErrInvalidArgument)
	}
	name, addr := s[:i], strings.Trim(s[i+1:], "[]")
	if err := validateDomain(name); err != nil {
		return ExtraHost{}, fmt.Errorf("--add-host %q: name: %w", s, err)
	}
	if addr == HostGateway {
		return ExtraHost{Name: name}, nil
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return ExtraHost{}, fmt.Errorf("--add-host %q: %q is not an IP address or %s: %w", s, addr, HostGateway, errdefs.ErrInvalidArgument)
	}
	return ExtraHost{Name: name, Addr: a}, nil
}

// ValidateHostname checks a container hostname: a DNS name of at most 64
// bytes (the kernel's limit).
func ValidateHostname(h string) error {
	if len(h) > 64 {
		return fmt.Errorf("hostname %q is longer than 64 characters: %w", h, errdefs.ErrInvalidArgument)
	}
	if strings.HasPrefix(h, "-") || strings.HasSuffix(h, ".") {
		return fmt.Errorf("hostname %q must not start with '-' or end with '.': %w", h, errdefs.ErrInvalidArgument)
	}
	if err := validateDomain(h); err != nil {
		return fmt.Errorf("hostname %q: %w", h, err)
	}
	return nil
}

// HostsConfig is what goes into a container's /etc/hosts.
type HostsConfig struct {
	Hostname   string
	Domainname string
	// Addrs are the container's own addresses, each mapped to its
	// hostname (Docker's convention).
	Addrs []netip.Addr
	Extra []ExtraHost
	// Gateway replaces HostGateway entries; unset drops them.
	Gateway netip.Addr
}

// HostsFile renders /etc/hosts.
func HostsFile(c HostsConfig) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("ff00::0\tip6-mcastprefix\n")
	b.WriteString("ff02::1\tip6-allnodes\n")
	b.WriteString("ff02::2\tip6-allrouters\n")
	for _, e := range c.Extra {
		addr := e.Addr
		if !addr.IsValid() {
			addr = c.Gateway
		}
		if addr.IsValid() {
			fmt.Fprintf(&b, "%s\t%s\n", addr, e.Name)
		}
	}
	if c.Hostname != "" {
		names := c.Hostname
		if c.Domainname != "" {
			names = c.Hostname + "." + c.Domainname + " " + c.Hostname
		}
		for _, a := range c.Addrs {
			fmt.Fprintf(&b, "%s\t%s\n", a, names)
		}
	}
	return b.Bytes()
}

// WriteInPlace replaces the contents of path without replacing the file,
// so a bind mount of it into a running container sees the new contents.
func WriteInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		f.Close()
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	return f.Close()
}
