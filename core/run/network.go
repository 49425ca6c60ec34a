package run

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/network"
)

// Network modes a container's Options.Networks may hold instead of
// network names. A container in one of them has no other network.
const (
	// NetworkHost shares the host's network namespace.
	NetworkHost = "host"
	// NetworkNone gives the container a namespace with only lo.
	NetworkNone = "none"
	// NetworkContainerPrefix, followed by a container's id, joins that
	// container's namespace (docker's container:<name|id>; the name is
	// resolved at create).
	NetworkContainerPrefix = "container:"
	// networkBridge is docker's name of its default network; it means
	// berth's default network unless a network has that name.
	networkBridge = "bridge"
)

// NetworkOptions are a container's network settings besides its ports
// and networks (docker run's --network-alias, --ip, --mac-address,
// --dns*, --add-host, -P).
type NetworkOptions struct {
	// Aliases are the names the container answers to on each network
	// (by network name), besides its name and short id.
	Aliases map[string][]string `json:"Aliases,omitempty"`
	// IP and MAC ask for a fixed address on the first network.
	IP  string `json:"IPAddress,omitempty"`
	MAC string `json:"MacAddress,omitempty"`
	// DNS, DNSSearch and DNSOptions replace the host's in resolv.conf.
	DNS        []string `json:"Dns,omitempty"`
	DNSSearch  []string `json:"DnsSearch,omitempty"`
	DNSOptions []string `json:"DnsOptions,omitempty"`
	// ExtraHosts are /etc/hosts entries, "name:ip" or "name:host-gateway".
	ExtraHosts []string `json:"ExtraHosts,omitempty"`
	// PublishAll published every port the image exposes on a free host
	// port (the ports are in Options.Ports).
	PublishAll bool `json:"PublishAllPorts,omitempty"`
}

func (o NetworkOptions) dns() network.DNSConfig {
	return network.DNSConfig{Servers: o.DNS, Search: o.DNSSearch, Options: o.DNSOptions}
}

// NetworkMode is the mode of a container's network settings: "host",
// "none", "container:<id>", or the first network's name ("" when the
// container has no network at all).
func NetworkMode(o Options) string {
	if len(o.Networks) == 0 {
		return ""
	}
	return o.Networks[0]
}

func isHostNetwork(o Options) bool { return NetworkMode(o) == NetworkHost }

// joinedContainer returns the id of the container whose network o joins.
func joinedContainer(o Options) (string, bool) {
	return strings.CutPrefix(NetworkMode(o), NetworkContainerPrefix)
}

// IsNetworkMode reports whether mode is host, none or container:<x>
// rather than a network.
func IsNetworkMode(mode string) bool {
	return mode == NetworkHost || mode == NetworkNone || strings.HasPrefix(mode, NetworkContainerPrefix)
}

// PortMappings converts recorded ports to the network's.
func PortMappings(ps []Port) ([]network.PortMapping, error) {
	out := make([]network.PortMapping, 0, len(ps))
	for _, p := range ps {
		m := network.PortMapping{Protocol: p.Protocol}
		if p.HostIP != "" {
			ip, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return nil, fmt.Errorf("port %d/%s: host address %q: %w", p.ContainerPort, p.Protocol, p.HostIP, errdefs.ErrInvalidArgument)
			}
			m.HostIP = ip
		}
		for _, v := range []struct {
			n   int
			dst *uint16
		}{{p.HostPort, &m.HostPort}, {p.HostPortEnd, &m.HostPortEnd}, {p.ContainerPort, &m.ContainerPort}} {
			if v.n < 0 || v.n > 65535 {
				return nil, fmt.Errorf("port %d is not from 0 to 65535: %w", v.n, errdefs.ErrInvalidArgument)
			}
			*v.dst = uint16(v.n)
		}
		out = append(out, m)
	}
	return out, network.ValidatePorts(out)
}

// PortsFromMappings converts the network's port mappings to records.
func PortsFromMappings(ms []network.PortMapping) []Port {
	out := make([]Port, 0, len(ms))
	for _, m := range ms {
		p := Port{HostPort: int(m.HostPort), HostPortEnd: int(m.HostPortEnd), ContainerPort: int(m.ContainerPort), Protocol: m.Protocol}
		if m.HostIP.IsValid() {
			p.HostIP = m.HostIP.String()
		}
		out = append(out, p)
	}
	return out
}

var aliasRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func validateAlias(a string) error {
	if len(a) > 253 || !aliasRe.MatchString(a) {
		return fmt.Errorf("network alias %q must be letters, digits, '_', '.' or '-': %w", a, errdefs.ErrInvalidArgument)
	}
	return nil
}

// prepareNetwork validates o's network settings at create and resolves
// them: the default network when none is named, network names by ID or
// prefix, container:<name> to the container's id, -P to the image's
// exposed ports, the host's hostname for host networking. Nothing is
// created: a container that fails here leaves nothing behind.
func (m *Manager) prepareNetwork(ctx context.Context, o *Options, img ocispec.ImageConfig) error {
	no := &o.Network
	if err := no.dns().Validate(); err != nil {
		return err
	}
	for _, h := range no.ExtraHosts {
		if _, err := network.ParseExtraHost(h); err != nil {
			return err
		}
	}
	if no.MAC != "" {
		if _, err := net.ParseMAC(no.MAC); err != nil {
			return fmt.Errorf("MAC address %q: %w", no.MAC, errdefs.ErrInvalidArgument)
		}
	}
	if no.PublishAll {
		o.Ports = append(o.Ports, exposedPorts(img, o.Ports)...)
	}
	if _, err := PortMappings(o.Ports); err != nil {
		return err
	}
	if err := m.resolveNetworks(ctx, o); err != nil {
		return err
	}
	return m.checkModeConflicts(ctx, o)
}

// exposedPorts are the image's EXPOSE ports not already published, each
// on a free host port (-P).
func exposedPorts(img ocispec.ImageConfig, have []Port) []Port {
	var out []Port
	keys := make([]string, 0, len(img.ExposedPorts))
	for k := range img.ExposedPorts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		port, proto, _ := strings.Cut(k, "/")
		if proto == "" {
			proto = "tcp"
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			continue // a malformed EXPOSE publishes nothing, as with docker
		}
		published := slices.ContainsFunc(have, func(p Port) bool { return p.ContainerPort == n && p.Protocol == proto })
		if !published {
			out = append(out, Port{ContainerPort: n, Protocol: proto})
		}
	}
	return out
}

// resolveNetworks checks the networks o names and records them by name.
func (m *Manager) resolveNetworks(ctx context.Context, o *Options) error {
	nets := o.Networks
	if len(nets) == 0 {
		if m.o.Network == nil {
			return nil // no network plugin: the container gets a bare namespace
		}
		// With no default network configured (default_network = ""),
		// a container that names none gets none, not an error.
		if _, err := m.defaultNetwork(ctx); errdefs.IsNotFound(err) {
			o.Networks = []string{NetworkNone}
			return nil
		}
		nets = []string{""}
	}
	out := make([]string, 0, len(nets))
	aliases := map[string][]string{}
	for _, ref := range nets {
		name, err := m.resolveNetwork(ctx, ref, len(nets))
		if err != nil {
			return err
		}
		if slices.Contains(out, name) {
			return fmt.Errorf("network %s is named twice: %w", name, errdefs.ErrInvalidArgument)
		}
		out = append(out, name)
		// Aliases are given by the network's name as the caller wrote it
		// ("" for the default network).
		if a, ok := o.Network.Aliases[ref]; ok {
			aliases[name] = a
			delete(o.Network.Aliases, ref)
		}
	}
	for ref := range o.Network.Aliases {
		return fmt.Errorf("network aliases for %q, which the container does not join: %w", ref, errdefs.ErrInvalidArgument)
	}
	o.Networks = out
	o.Network.Aliases = nil
	if len(aliases) > 0 {
		o.Network.Aliases = aliases
	}
	return nil
}

// resolveNetwork resolves one --network value; n is how many were given.
func (m *Manager) resolveNetwork(ctx context.Context, ref string, n int) (string, error) {
	if IsNetworkMode(ref) || ref == NetworkContainerPrefix[:len(NetworkContainerPrefix)-1] {
		if n > 1 {
			return "", fmt.Errorf("conflicting options: network mode %q cannot be combined with other networks: %w", ref, errdefs.ErrInvalidArgument)
		}
		return m.resolveMode(ctx, ref)
	}
	if m.o.Network == nil {
		return "", fmt.Errorf("network %q: berthd has no network plugin (it needs root and the CNI plugins): %w", ref, errdefs.ErrFailedPrecondition)
	}
	var net *network.Network
	var err error
	if ref != "" {
		net, err = m.o.Network.Network(ctx, ref)
	}
	if ref == "" || errdefs.IsNotFound(err) && ref == networkBridge {
		net, err = m.defaultNetwork(ctx)
	}
	if err != nil {
		return "", networkNotFound(ref, err)
	}
	return net.Name, nil
}

func (m *Manager) defaultNetwork(ctx context.Context) (*network.Network, error) {
	nets, err := m.o.Network.Networks(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if n.Default {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no default network is configured: name one with --network: %w", errdefs.ErrNotFound)
}

// resolveMode checks host, none and container:<ref>.
func (m *Manager) resolveMode(ctx context.Context, mode string) (string, error) {
	ref, ok := strings.CutPrefix(mode, NetworkContainerPrefix)
	if !ok {
		if mode != NetworkHost && mode != NetworkNone {
			return "", fmt.Errorf("network mode %q: use container:<name|id>: %w", mode, errdefs.ErrInvalidArgument)
		}
		return mode, nil
	}
	if ref == "" {
		return "", fmt.Errorf("network mode %q names no container: use container:<name|id>: %w", mode, errdefs.ErrInvalidArgument)
	}
	other, err := m.Resolve(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("network mode %s: %w", mode, err)
	}
	if !other.Managed {
		return "", fmt.Errorf("network mode %s: container %s was not made by berth: %w", mode, other.ID, errdefs.ErrFailedPrecondition)
	}
	// Joining a container that joins another joins that one.
	if id, ok := joinedContainer(other.Config.Options); ok {
		return NetworkContainerPrefix + id, nil
	}
	return NetworkContainerPrefix + other.ID, nil
}

// checkModeConflicts refuses settings a network mode cannot honour, with
// docker's messages, and fills the host's hostname for host networking.
func (m *Manager) checkModeConflicts(ctx context.Context, o *Options) error {
	mode, no := NetworkMode(*o), o.Network
	conflict := func(what string) error {
		return fmt.Errorf("conflicting options: %s and the network mode %q: %w", what, mode, errdefs.ErrInvalidArgument)
	}
	special := IsNetworkMode(mode)
	for _, aliases := range no.Aliases {
		if special {
			return conflict("network aliases")
		}
		for _, a := range aliases {
			if err := validateAlias(a); err != nil {
				return err
			}
		}
	}
	if (no.IP != "" || no.MAC != "") && special {
		return conflict("a fixed IP or MAC address")
	}
	if otherID, ok := joinedContainer(*o); ok {
		switch {
		case len(o.Ports) > 0 || no.PublishAll:
			return conflict("port publishing")
		case o.Hostname != "":
			return conflict("hostname")
		case len(no.DNS) > 0 || len(no.DNSSearch) > 0 || len(no.DNSOptions) > 0:
			return conflict("dns")
		case len(no.ExtraHosts) > 0:
			return conflict("custom host-to-IP mapping")
		}
		// The container shares the other's hostname, as it shares its
		// /etc/hostname.
		if other, err := m.get(ctx, otherID); err == nil {
			if spec, err := other.Spec(); err == nil {
				o.Hostname = spec.Hostname
			}
		}
		return nil
	}
	if mode == NetworkHost {
		// Published ports mean nothing on the host's own network: docker
		// discards them with a warning (the CLI prints it).
		o.Ports = nil
		if o.Hostname == "" {
			h, err := os.Hostname()
			if err != nil {
				return fmt.Errorf("read the host's name for --network host: %w", err)
			}
			o.Hostname = h
		}
		return nil
	}
	return m.checkNetworkSettings(ctx, o)
}

// checkNetworkSettings checks ports, IP and aliases against the networks
// they go to: ports and the fixed addresses go to the first network.
func (m *Manager) checkNetworkSettings(ctx context.Context, o *Options) error {
	if len(o.Networks) == 0 && len(o.Ports) > 0 {
		return fmt.Errorf("cannot publish ports: berthd has no network plugin (it needs root and the CNI plugins): %w", errdefs.ErrFailedPrecondition)
	}
	if len(o.Networks) == 0 || o.Networks[0] == NetworkNone {
		if len(o.Ports) > 0 {
			return fmt.Errorf("conflicting options: port publishing and a container without a network (--network none): %w", errdefs.ErrInvalidArgument)
		}
		return nil
	}
	first, err := m.o.Network.Network(ctx, o.Networks[0])
	if err != nil {
		return err
	}
	if len(o.Ports) > 0 && !first.Ports {
		return fmt.Errorf("network %s cannot publish ports (internal, or no portmap in its CNI configuration): %w", first.Name, errdefs.ErrInvalidArgument)
	}
	if o.Network.IP != "" {
		ip, err := netip.ParseAddr(o.Network.IP)
		if err != nil || ip.Zone() != "" {
			return fmt.Errorf("IP address %q: %w", o.Network.IP, errdefs.ErrInvalidArgument)
		}
		if !slices.ContainsFunc(first.Subnets, func(s network.Subnet) bool { return s.Subnet.Contains(ip) }) {
			return fmt.Errorf("IP address %s is outside the subnets of network %s: %w", ip, first.Name, errdefs.ErrInvalidArgument)
		}
	}
	for net := range o.Network.Aliases {
		if n, err := m.o.Network.Network(ctx, net); err == nil && n.Default {
			return fmt.Errorf("network-scoped aliases are for user-defined networks, not the default network %s: %w", n.Name, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
