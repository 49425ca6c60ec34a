package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// PortMapping publishes one container port on the host.
type PortMapping struct {
	// HostIP is the host address the port is published on; the zero
	// Addr means every address.
	HostIP netip.Addr `json:"host_ip,omitzero"`
	// HostPort is the published port; 0 asks for a free one from the
	// kernel's ephemeral range. When HostPortEnd is above HostPort, the
	// mapping asks for one free port of HostPort..HostPortEnd.
	HostPort    uint16 `json:"host_port"`
	HostPortEnd uint16 `json:"host_port_end,omitempty"`
	// ContainerPort is the port inside the container.
	ContainerPort uint16 `json:"container_port"`
	// Protocol is tcp, udp or sctp.
	Protocol string `json:"protocol"`
}

// String renders the mapping the way `docker ps` does:
// "0.0.0.0:8080->80/tcp".
func (p PortMapping) String() string {
	ip := "0.0.0.0"
	if p.HostIP.IsValid() {
		ip = p.HostIP.String()
	}
	host := strconv.Itoa(int(p.HostPort))
	if p.IsRange() {
		host += "-" + strconv.Itoa(int(p.HostPortEnd))
	}
	return joinHostPort(ip, host) + "->" + strconv.Itoa(int(p.ContainerPort)) + "/" + p.Protocol
}

// IsRange reports whether the mapping asks for one port of a host range.
func (p PortMapping) IsRange() bool { return p.HostPortEnd > p.HostPort && p.HostPort != 0 }

// Candidates returns the host ports the mapping may use: its one port, the
// ports of its range, or none when any free port will do.
func (p PortMapping) Candidates() []uint16 {
	if p.HostPort == 0 {
		return nil
	}
	if !p.IsRange() {
		return []uint16{p.HostPort}
	}
	out := make([]uint16, 0, int(p.HostPortEnd-p.HostPort)+1)
	for port := int(p.HostPort); port <= int(p.HostPortEnd); port++ {
		out = append(out, uint16(port))
	}
	return out
}

func joinHostPort(ip, port string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + port
	}
	return ip + ":" + port
}

// Overlaps reports whether p and o claim the same host port: same
// protocol and port, and host addresses that meet (an unset address is
// every address).
func (p PortMapping) Overlaps(o PortMapping) bool {
	if p.Protocol != o.Protocol || p.HostPort == 0 || p.IsRange() || o.IsRange() || p.HostPort != o.HostPort {
		return false
	}
	if !p.HostIP.IsValid() || !o.HostIP.IsValid() {
		return true
	}
	if p.HostIP.IsUnspecified() || o.HostIP.IsUnspecified() {
		return p.HostIP.Is4() == o.HostIP.Is4()
	}
	return p.HostIP == o.HostIP
}

// maxPortsPerSpec bounds how many mappings one range may expand to, so a
// typo such as 1-65535 cannot make thousands of firewall rules at once.
const maxPortsPerSpec = 1024

// ParsePorts parses docker-style publish specs (the -p flag):
//
//	containerPort[/proto]                 a free host port on every address
//	hostPort:containerPort[/proto]
//	hostIP:hostPort:containerPort[/proto]
//	hostIP::containerPort[/proto]         a free host port on hostIP
//
// Ports may be ranges (8000-8009:80-89, equal lengths; or 8000-8009:80,
// one free port of the host range). IPv6 host addresses go in brackets:
// [::1]:8080:80. Protocols are tcp (default), udp and sctp.
func ParsePorts(specs ...string) ([]PortMapping, error) {
	var out []PortMapping
	for _, s := range specs {
		ms, err := parsePortSpec(s)
		if err != nil {
			return nil, fmt.Errorf("port spec %q: %w: %w", s, err, errdefs.ErrInvalidArgument)
		}
		out = append(out, ms...)
	}
	if err := checkDuplicates(out); err != nil {
		return nil, err
	}
	return out, nil
}

func checkDuplicates(ms []PortMapping) error {
	for i := range ms {
		for j := i + 1; j < len(ms); j++ {
			if ms[i].Overlaps(ms[j]) {
				return fmt.Errorf("host port %s is published twice: %w", hostPortString(ms[i]), errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

func hostPortString(p PortMapping) string {
	ip := "0.0.0.0"
	if p.HostIP.IsValid() {
		ip = p.HostIP.String()
	}
	return joinHostPort(ip, strconv.Itoa(int(p.HostPort))) + "/" + p.Protocol
}

func parsePortSpec(s string) ([]PortMapping, error) {
	if s == "" {
		return nil, fmt.Errorf("empty")
	}
	rest, proto, hasProto := strings.Cut(s, "/")
	if hasProto {
		proto = strings.ToLower(proto)
		switch proto {
		case "tcp", "udp", "sctp":
		default:
			return nil, fmt.Errorf("protocol %q is not tcp, udp or sctp", proto)
		}
	} else {
		proto = "tcp"
	}
	ipPart, hostPart, contPart, err := splitPortSpec(rest)
	if err != nil {
		return nil, err
	}
	var hostIP netip.Addr
	if ipPart != "" {
		if hostIP, err = netip.ParseAddr(ipPart); err != nil || hostIP.Zone() != "" {
			return nil, fmt.Errorf("host address %q is not an IP address", ipPart)
		}
	}
	cStart, cEnd, err := parseRange(contPart, "container port", false)
	if err != nil {
		return nil, err
	}
	var hStart, hEnd uint16
	if hostPart != "" {
		if hStart, hEnd, err = parseRange(hostPart, "host port", true); err != nil {
			return nil, err
		}
	}
	n := int(cEnd-cStart) + 1
	if n > maxPortsPerSpec {
		return nil, fmt.Errorf("range of %d ports is more than the %d allowed in one spec", n, maxPortsPerSpec)
	}
	hostRange := int(hEnd-hStart) + 1
	out := make([]PortMapping, 0, n)
	switch {
	case hostPart == "" || hStart == 0:
		for i := 0; i < n; i++ {
			out = append(out, PortMapping{HostIP: hostIP, ContainerPort: cStart + uint16(i), Protocol: proto})
		}
	case hostRange == n:
		for i := 0; i < n; i++ {
			out = append(out, PortMapping{HostIP: hostIP, HostPort: hStart + uint16(i), ContainerPort: cStart + uint16(i), Protocol: proto})
		}
	case n == 1:
		// One container port, a range of host ports to choose from.
		out = append(out, PortMapping{HostIP: hostIP, HostPort: hStart, HostPortEnd: hEnd, ContainerPort: cStart, Protocol: proto})
	default:
		return nil, fmt.Errorf("host range %s has %d ports but container range %s has %d", hostPart, hostRange, contPart, n)
	}
	return out, nil
}

// splitPortSpec separates "[ip:][host:]container".
func splitPortSpec(s string) (ip, host, container string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 || len(s) < end+2 || s[end+1] != ':' {
			return "", "", "", fmt.Errorf("bracketed host address must be followed by ':'")
		}
		ip = s[1:end]
		host, container, ok := strings.Cut(s[end+2:], ":")
		if !ok {
			return "", "", "", fmt.Errorf("want [hostIP]:hostPort:containerPort")
		}
		return ip, host, container, nil
	}
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 1:
		return "", "", parts[0], nil
	case 2:
		return "", parts[0], parts[1], nil
	case 3:
		return parts[0], parts[1], parts[2], nil
	}
	return "", "", "", fmt.Errorf("too many ':' (put an IPv6 host address in brackets: [::1]:8080:80)")
}

func parseRange(s, what string, zeroOK bool) (uint16, uint16, error) {
	a, b, isRange := strings.Cut(s, "-")
	start, err := parsePort(a, what, zeroOK && !isRange)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return start, start, nil
	}
	end, err := parsePort(b, what, false)
	if err != nil {
		return 0, 0, err
	}
	if end < start {
		return 0, 0, fmt.Errorf("%s range %s ends before it starts", what, s)
	}
	return start, end, nil
}

func parsePort(s, what string, zeroOK bool) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("%s is empty", what)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a number from 1 to 65535", what, s)
	}
	if n == 0 && !zeroOK {
		return 0, fmt.Errorf("%s must not be 0", what)
	}
	return uint16(n), nil
}

// ValidatePorts checks mappings built by a caller rather than parsed:
// protocols, container ports, host ranges, and that no host port is
// claimed twice.
func ValidatePorts(ms []PortMapping) error {
	for _, m := range ms {
		switch m.Protocol {
		case "tcp", "udp", "sctp":
		default:
			return fmt.Errorf("port %s: protocol %q is not tcp, udp or sctp: %w", m, m.Protocol, errdefs.ErrInvalidArgument)
		}
		if m.ContainerPort == 0 {
			return fmt.Errorf("port %s: container port must not be 0: %w", m, errdefs.ErrInvalidArgument)
		}
		if m.HostPortEnd != 0 && m.HostPortEnd < m.HostPort {
			return fmt.Errorf("port %s: host range ends before it starts: %w", m, errdefs.ErrInvalidArgument)
		}
		if m.HostIP.Zone() != "" {
			return fmt.Errorf("port %s: host address must not have a zone: %w", m, errdefs.ErrInvalidArgument)
		}
	}
	return checkDuplicates(ms)
}
