package run

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/core/run/names"
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
		if errdefs.IsNotFound(err) {
			return "", fmt.Errorf("network %s not found: %w", ref, errdefs.ErrNotFound)
		}
		return "", err
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

// setupNetwork prepares container r's network before its task is
// created: a sandbox (namespace and hosts, resolv.conf and hostname
// files) joined to each of its networks, the first publishing its ports.
// The spec gets the namespace and the files. On error nothing of it is
// left; the function returned undoes it (for a task that fails to
// start).
func (m *Manager) setupNetwork(ctx context.Context, ns string, r *Record, spec *specs.Spec) (func(), error) {
	o := r.Config.Options
	nothing := func() {}
	if otherID, ok := joinedContainer(o); ok {
		return nothing, m.joinNetwork(ctx, r, otherID, spec)
	}
	if m.o.Network == nil {
		if len(o.Networks) > 0 && !isHostNetwork(o) && o.Networks[0] != NetworkNone {
			return nil, fmt.Errorf("container %s joins network %s but berthd has no network plugin: %w", names.Short(r.ID), o.Networks[0], errdefs.ErrUnavailable)
		}
		return nothing, nil
	}
	// A sandbox left by a run whose end berthd did not see.
	m.releaseNetwork(ctx, ns, r.ID)
	sb, err := m.o.Network.CreateSandbox(ctx, network.SandboxRequest{
		ID: r.ID, Hostname: spec.Hostname, HostNetwork: isHostNetwork(o),
		DNS: o.Network.dns(), ExtraHosts: o.Network.ExtraHosts,
	})
	if err != nil {
		return nil, fmt.Errorf("network sandbox: %w", err)
	}
	undo := func() { m.releaseNetwork(ctx, ns, r.ID) }
	if !sb.HostNetwork {
		for i, net := range o.Networks {
			if net == NetworkNone {
				continue
			}
			if err := m.attach(ctx, r, net, i == 0); err != nil {
				undo()
				return nil, err
			}
		}
	}
	if err := applySandbox(ctx, spec, sb); err != nil {
		undo()
		return nil, err
	}
	return undo, nil
}

// attach joins container r to network net; first carries the ports and
// fixed addresses.
func (m *Manager) attach(ctx context.Context, r *Record, net string, first bool) error {
	o := r.Config.Options
	req := network.AttachRequest{ContainerID: r.ID, Name: r.Config.Name, Network: net, Aliases: m.aliases(ctx, r, net)}
	if first {
		ports, err := PortMappings(o.Ports)
		if err != nil {
			return err
		}
		req.Ports, req.MAC = ports, o.Network.MAC
		if o.Network.IP != "" {
			if req.IP, err = netip.ParseAddr(o.Network.IP); err != nil {
				return fmt.Errorf("IP address %q: %w", o.Network.IP, errdefs.ErrInvalidArgument)
			}
		}
	}
	if _, err := m.o.Network.Attach(ctx, req); err != nil {
		return m.explainAttach(ctx, req, err)
	}
	return nil
}

// aliases are the names container r answers to on net besides its name:
// its short id (on user networks, as docker's) and its aliases there.
func (m *Manager) aliases(ctx context.Context, r *Record, net string) []string {
	var out []string
	if n, err := m.o.Network.Network(ctx, net); err == nil && !n.Default {
		out = append(out, names.Short(r.ID))
	}
	for _, a := range r.Config.Options.Network.Aliases[net] {
		if !slices.Contains(out, a) && a != r.Config.Name {
			out = append(out, a)
		}
	}
	return out
}

// explainAttach names the container holding a host port an attachment
// wanted, by its name rather than the plugin's namespace/id.
func (m *Manager) explainAttach(ctx context.Context, req network.AttachRequest, err error) error {
	if !errdefs.IsAlreadyExists(err) || len(req.Ports) == 0 {
		return err
	}
	all, lerr := m.o.Network.Attachments(ctx, network.AttachmentFilter{})
	if lerr != nil {
		return err
	}
	ns, _ := namespaces.Namespace(ctx)
	for _, a := range all {
		if a.ContainerID == req.ContainerID && a.Namespace == ns {
			continue
		}
		for _, held := range a.Ports {
			for _, want := range req.Ports {
				if !sameHostPort(held, want) {
					continue
				}
				who := fmt.Sprintf("container %s (%s)", a.Name, names.Short(a.ContainerID))
				if a.Name == "" {
					who = "container " + names.Short(a.ContainerID)
				}
				if a.Namespace != ns {
					who += " of namespace " + a.Namespace
				}
				return fmt.Errorf("host port %s is already published by %s: %w", hostPortString(held), who, errdefs.ErrAlreadyExists)
			}
		}
	}
	return err
}

// sameHostPort reports whether want (maybe a range or any port) could
// have clashed with the published held.
func sameHostPort(held, want network.PortMapping) bool {
	if want.HostPort == 0 {
		return false
	}
	for _, p := range want.Candidates() {
		w := want
		w.HostPort, w.HostPortEnd = p, 0
		if held.Overlaps(w) {
			return true
		}
	}
	return false
}

func hostPortString(p network.PortMapping) string {
	ip := "0.0.0.0"
	if p.HostIP.IsValid() {
		ip = p.HostIP.String()
	}
	return net.JoinHostPort(ip, strconv.Itoa(int(p.HostPort))) + "/" + p.Protocol
}

// joinNetwork puts container r into the namespace of container otherID,
// with its hosts, resolv.conf and hostname files. The other container
// must be running: only a running container has a sandbox.
func (m *Manager) joinNetwork(ctx context.Context, r *Record, otherID string, spec *specs.Spec) error {
	if m.o.Network == nil {
		return fmt.Errorf("container %s joins container %s's network but berthd has no network plugin: %w", names.Short(r.ID), names.Short(otherID), errdefs.ErrUnavailable)
	}
	sb, err := m.o.Network.Sandbox(ctx, otherID)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("cannot join the network of container %s: it is not running: %w", names.Short(otherID), errdefs.ErrFailedPrecondition)
	} else if err != nil {
		return err
	}
	return applySandbox(ctx, spec, sb)
}

// applySandbox points spec at sandbox sb: its namespace (none of its own
// for the host's network) and its files over /etc/hosts, /etc/resolv.conf
// and /etc/hostname, except where the container mounts something of its
// own there.
func applySandbox(ctx context.Context, spec *specs.Spec, sb *network.Sandbox) error {
	nsOpt := oci.WithHostNamespace(specs.NetworkNamespace)
	if !sb.HostNetwork {
		nsOpt = oci.WithNetNSPath(sb.NetNS)
	}
	if err := nsOpt(ctx, spec); err != nil {
		return err
	}
	files := oci.HostsFiles{Hosts: sb.HostsPath, ResolvConf: sb.ResolvConfPath, Hostname: sb.HostnamePath}
	for _, mnt := range spec.Mounts {
		switch path.Clean(mnt.Destination) {
		case "/etc/hosts":
			files.Hosts = ""
		case "/etc/resolv.conf":
			files.ResolvConf = ""
		case "/etc/hostname":
			files.Hostname = ""
		}
	}
	return oci.WithHostsFiles(files)(ctx, spec)
}

// releaseNetwork tears down container id's sandbox and attachments, if
// it has any. It is idempotent, cheap when there is nothing, and logs
// rather than fails: the network plugin keeps what it could not remove
// and a later call (rm) retries.
func (m *Manager) releaseNetwork(ctx context.Context, ns, id string) {
	if m.o.Network == nil {
		return
	}
	ctx = namespaces.WithNamespace(ctx, ns)
	if _, err := m.o.Network.Sandbox(ctx, id); errdefs.IsNotFound(err) {
		atts, err := m.o.Network.Attachments(ctx, network.AttachmentFilter{ContainerID: id})
		if err == nil && len(atts) == 0 {
			return
		}
	}
	if err := m.o.Network.RemoveSandbox(ctx, id); err != nil {
		slog.Warn("release container network", "namespace", ns, "id", id, "error", err)
	}
}

// TaskGone is told that container id's task went away because its shim
// died (while berthd ran, or while it was down: the runtime reports those
// at start). Unless the container runs again meanwhile, its network is
// released at once; the monitor records the exit as usual.
func (m *Manager) TaskGone(ns, id string) {
	if m.o.Network == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		e := m.entry(ns, id)
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.run != nil && e.run.task != nil {
			if _, err := e.run.task.Status(namespaces.WithNamespace(m.ctx, ns)); err == nil {
				return // a new run, which owns the network now
			}
		}
		m.releaseNetwork(context.WithoutCancel(m.ctx), ns, id)
	}()
}

// NetworkStatus is a container's network as it is now: empty unless it
// runs.
type NetworkStatus struct {
	// Sandbox is the container's namespace and files (for a container
	// joining another's network, the other's).
	Sandbox *network.Sandbox
	// Attachments are its networks with addresses and published ports,
	// in interface order.
	Attachments []*network.Attachment
}

// Ports are the host ports published now.
func (s NetworkStatus) Ports() []network.PortMapping {
	var out []network.PortMapping
	for _, a := range s.Attachments {
		out = append(out, a.Ports...)
	}
	return out
}

// NetworkStatuses returns the network state of the context namespace's
// containers that have one, by id.
func (m *Manager) NetworkStatuses(ctx context.Context) (map[string]NetworkStatus, error) {
	out := map[string]NetworkStatus{}
	if m.o.Network == nil {
		return out, nil
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	sbs, err := m.o.Network.Sandboxes(ctx)
	if err != nil {
		return nil, err
	}
	for _, sb := range sbs {
		out[sb.ID] = NetworkStatus{Sandbox: sb}
	}
	atts, err := m.o.Network.Attachments(ctx, network.AttachmentFilter{})
	if err != nil {
		return nil, err
	}
	for _, a := range atts {
		if a.Namespace == ns {
			st := out[a.ContainerID]
			st.Attachments = append(st.Attachments, a)
			out[a.ContainerID] = st
		}
	}
	return out, nil
}

// NetworkStatus returns container r's network state.
func (m *Manager) NetworkStatus(ctx context.Context, r Record) NetworkStatus {
	var st NetworkStatus
	if m.o.Network == nil {
		return st
	}
	id := r.ID
	if other, ok := joinedContainer(r.Config.Options); ok {
		id = other
	}
	if sb, err := m.o.Network.Sandbox(ctx, id); err == nil {
		st.Sandbox = sb
	}
	if id != r.ID {
		return st
	}
	atts, err := m.o.Network.Attachments(ctx, network.AttachmentFilter{ContainerID: id})
	if err == nil {
		st.Attachments = atts
	}
	return st
}

// Connect joins a container to another network (docker network
// connect): at once when it runs, and at each of its starts. Aliases are
// names it answers to there besides its name and short id.
func (m *Manager) Connect(ctx context.Context, ref, netRef string, aliases []string) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	if m.o.Network == nil {
		return fmt.Errorf("connect container %s: berthd has no network plugin: %w", names.Short(r.ID), errdefs.ErrUnavailable)
	}
	if IsNetworkMode(netRef) {
		return fmt.Errorf("a container cannot be connected to network mode %q (give it at create with --network): %w", netRef, errdefs.ErrInvalidArgument)
	}
	for _, a := range aliases {
		if err := validateAlias(a); err != nil {
			return err
		}
	}
	n, err := m.o.Network.Network(ctx, netRef)
	if err != nil {
		return err
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, err = m.get(ctx, r.ID); err != nil {
		return err
	}
	o := &r.Config.Options
	if mode := NetworkMode(*o); IsNetworkMode(mode) {
		return fmt.Errorf("container %s uses network mode %q and cannot join other networks: %w", names.Short(r.ID), mode, errdefs.ErrFailedPrecondition)
	}
	if slices.Contains(o.Networks, n.Name) {
		return fmt.Errorf("container %s is already connected to network %s: %w", names.Short(r.ID), n.Name, errdefs.ErrAlreadyExists)
	}
	if len(aliases) > 0 && n.Default {
		return fmt.Errorf("network-scoped aliases are for user-defined networks, not the default network %s: %w", n.Name, errdefs.ErrInvalidArgument)
	}
	o.Networks = append(o.Networks, n.Name)
	if len(aliases) > 0 {
		if o.Network.Aliases == nil {
			o.Network.Aliases = map[string][]string{}
		}
		o.Network.Aliases[n.Name] = aliases
	}
	if e.run != nil {
		// Ports stay with the first network.
		if err := m.attach(ctx, &r, n.Name, len(o.Networks) == 1); err != nil {
			return err
		}
	}
	if err := m.saveConfig(ctx, &r); err != nil {
		if e.run != nil {
			if derr := m.o.Network.Detach(ctx, r.ID, n.Name); derr != nil {
				slog.Warn("undo network connect", "id", r.ID, "network", n.Name, "error", derr)
			}
		}
		return err
	}
	return nil
}

// Disconnect takes a container off a network (docker network
// disconnect); force also drops a network that no longer exists.
func (m *Manager) Disconnect(ctx context.Context, ref, netRef string, force bool) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	if m.o.Network == nil {
		return fmt.Errorf("disconnect container %s: berthd has no network plugin: %w", names.Short(r.ID), errdefs.ErrUnavailable)
	}
	if IsNetworkMode(netRef) {
		return fmt.Errorf("a container cannot be disconnected from network mode %q: %w", netRef, errdefs.ErrInvalidArgument)
	}
	name := netRef
	if n, err := m.o.Network.Network(ctx, netRef); err == nil {
		name = n.Name
	} else if !errdefs.IsNotFound(err) || !force {
		return err
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, err = m.get(ctx, r.ID); err != nil {
		return err
	}
	o := &r.Config.Options
	if mode := NetworkMode(*o); IsNetworkMode(mode) {
		return fmt.Errorf("container %s uses network mode %q: there is nothing to disconnect: %w", names.Short(r.ID), mode, errdefs.ErrFailedPrecondition)
	}
	i := slices.Index(o.Networks, name)
	if i < 0 {
		return fmt.Errorf("container %s is not connected to network %s: %w", names.Short(r.ID), name, errdefs.ErrNotFound)
	}
	if e.run != nil {
		if err := m.o.Network.Detach(ctx, r.ID, name); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	o.Networks = slices.Delete(o.Networks, i, i+1)
	delete(o.Network.Aliases, name)
	if len(o.Networks) == 0 {
		// Off every network: a namespace with only lo from now on.
		o.Networks = []string{NetworkNone}
	}
	return m.saveConfig(ctx, &r)
}

// saveConfig writes r's config extension into its record.
func (m *Manager) saveConfig(ctx context.Context, r *Record) error {
	a, err := marshalExt(typeConfig, r.Config)
	if err != nil {
		return err
	}
	c := r.Container
	c.Extensions = map[string]typeurlAny{ExtensionConfig: a}
	updated, err := m.o.Containers.Update(ctx, c, "extensions."+ExtensionConfig)
	if err != nil {
		return fmt.Errorf("record network settings of container %s: %w", names.Short(r.ID), err)
	}
	r.Container = updated
	return nil
}
