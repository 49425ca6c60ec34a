package network

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/containerd/errdefs"
)

// ResolvConf is the part of resolv.conf(5) containers care about.
type ResolvConf struct {
	Nameservers []netip.Addr
	Search      []string
	Options     []string
}

// DefaultNameservers are used when neither the user nor the host gives a
// nameserver a container can reach (the host's are all loopback ones):
// the same public resolvers Docker falls back to.
var DefaultNameservers = []netip.Addr{
	netip.MustParseAddr("8.8.8.8"),
	netip.MustParseAddr("8.8.4.4"),
}

// maxNameservers is the resolver library's limit (MAXNS); more are ignored
// by glibc and musl alike.
const maxNameservers = 3

// ParseResolvConf reads nameserver, search, domain and options lines.
// Malformed nameserver lines are skipped, as the C resolvers do.
func ParseResolvConf(data []byte) ResolvConf {
	var rc ResolvConf
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil {
				rc.Nameservers = append(rc.Nameservers, a)
			}
		case "search", "domain":
			// The last of search and domain wins.
			rc.Search = append([]string(nil), f[1:]...)
		case "options":
			rc.Options = append(rc.Options, f[1:]...)
		}
	}
	return rc
}

// ReadResolvConf parses the file at path; a missing file is empty.
func ReadResolvConf(path string) (ResolvConf, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return ResolvConf{}, nil
		}
		return ResolvConf{}, fmt.Errorf("read %s: %w", path, err)
	}
	return ParseResolvConf(data), nil
}

// HostResolvConf reads the host's resolver configuration from path. When
// it names only a loopback stub (systemd-resolved's 127.0.0.53) and the
// stub's own upstream list exists, that list is used instead, since it
// names servers reachable from outside the host's loopback.
func HostResolvConf(path string) (ResolvConf, error) {
	rc, err := ReadResolvConf(path)
	if err != nil {
		return rc, err
	}
	if len(rc.Nameservers) > 0 && len(nonLoopback(rc.Nameservers)) == 0 {
		const resolved = "/run/systemd/resolve/resolv.conf"
		if up, err := ReadResolvConf(resolved); err == nil && len(nonLoopback(up.Nameservers)) > 0 {
			up.Search, up.Options = rc.Search, rc.Options
			return up, nil
		}
	}
	return rc, nil
}

func nonLoopback(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if !a.IsLoopback() {
			out = append(out, a)
		}
	}
	return out
}

// Bytes renders rc as a resolv.conf file.
func (rc ResolvConf) Bytes() []byte {
	var b bytes.Buffer
	for _, n := range rc.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", n)
	}
	if len(rc.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(rc.Search, " "))
	}
	if len(rc.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(rc.Options, " "))
	}
	return b.Bytes()
}

// DNSConfig is what a user asks for with --dns, --dns-search and
// --dns-option.
type DNSConfig struct {
	Servers []string `json:"servers,omitempty"`
	Search  []string `json:"search,omitempty"`
	Options []string `json:"options,omitempty"`
}

// Validate checks every entry, naming the bad one.
func (d DNSConfig) Validate() error {
	if _, err := d.servers(); err != nil {
		return err
	}
	for _, s := range d.Search {
		if s == "." {
			continue
		}
		if err := validateDomain(s); err != nil {
			return fmt.Errorf("--dns-search %q: %w", s, err)
		}
	}
	for _, o := range d.Options {
		if o == "" || strings.ContainsAny(o, " \t\r\n#;") {
			return fmt.Errorf("--dns-option %q must be one word: %w", o, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func (d DNSConfig) servers() ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range d.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("--dns %q is not an IP address: %w", s, errdefs.ErrInvalidArgument)
		}
		out = append(out, a)
	}
	return out, nil
}

// ContainerResolvConf builds a container's resolv.conf. embedded lists the
// addresses of berth's resolvers on the container's networks; with any, the
// container asks them (and they forward what they do not know to user or
// host servers). Without, the container asks the user's servers or the
// host's non-loopback ones, or DefaultNameservers.
func ContainerResolvConf(host ResolvConf, user DNSConfig, embedded []netip.Addr) (ResolvConf, error) {
	if err := user.Validate(); err != nil {
		return ResolvConf{}, err
	}
	servers, _ := user.servers()
	rc := ResolvConf{Search: host.Search, Options: host.Options}
	switch {
	case len(embedded) > 0:
		rc.Nameservers = embedded
	case len(servers) > 0:
		rc.Nameservers = servers
	default:
		rc.Nameservers = nonLoopback(host.Nameservers)
		if len(rc.Nameservers) == 0 {
			rc.Nameservers = DefaultNameservers
		}
	}
	if len(rc.Nameservers) > maxNameservers {
		rc.Nameservers = rc.Nameservers[:maxNameservers]
	}
	if len(user.Search) > 0 {
		rc.Search = nil
		// "--dns-search ." means no search domains at all.
		if !(len(user.Search) == 1 && user.Search[0] == ".") {
			rc.Search = user.Search
		}
	}
	if len(user.Options) > 0 {
		rc.Options = user.Options
	}
	return rc, nil
}

// Upstreams are the servers berth's resolver forwards a container's
// unknown names to: the user's --dns servers, else the host's (loopback
// ones included, since the resolver runs in the host's namespace).
func Upstreams(host ResolvConf, user DNSConfig) []netip.Addr {
	if servers, err := user.servers(); err == nil && len(servers) > 0 {
		return servers
	}
	return host.Nameservers
}

// validateDomain checks a DNS name: dot-separated labels of letters,
// digits, '-' and '_', each 1-63 bytes, 253 bytes in all.
func validateDomain(s string) error {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return fmt.Errorf("must be 1 to 253 characters: %w", errdefs.ErrInvalidArgument)
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("label %q must be 1 to 63 characters: %w", l, errdefs.ErrInvalidArgument)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("label %q has %q; use letters, digits, '-' and '_': %w", l, c, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}
