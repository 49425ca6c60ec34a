// Package network is berth's networking model with no API knowledge:
// networks, containers' network sandboxes (namespace plus /etc/hosts,
// /etc/resolv.conf and /etc/hostname), attachments of sandboxes to
// networks, published ports, and the Manager interface the runtime, CRI
// and the Networks service use. The CNI implementation lives in
// plugins/network/cni.
//
// Networks are host-wide (not namespaced); sandboxes and attachments
// belong to the containerd namespace in the request context, like
// containers.
package network

import (
	"context"
	"net/netip"
	"time"
)

// Drivers berth creates networks with.
const (
	DriverBridge  = "bridge"
	DriverMacvlan = "macvlan"
	DriverIPvlan  = "ipvlan"
)

// SourceBerth is the Source of networks berth created; other networks'
// Source is the path of the CNI configuration file defining them.
const SourceBerth = "berth"

// Options a CreateRequest may carry.
const (
	OptionBridge = "bridge" // bridge name (bridge driver)
	OptionMTU    = "mtu"    // interface MTU
	OptionParent = "parent" // host interface (macvlan, ipvlan)
	OptionMode   = "mode"   // macvlan or ipvlan mode
)

// Subnet is one address range of a network.
type Subnet struct {
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
}

// Network is one network containers can join: a CNI configuration list,
// created by berth or dropped into the configuration folder by a user.
type Network struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Driver string `json:"driver"`
	// Source is SourceBerth or the defining file's path.
	Source string `json:"source"`
	// File is the configuration file defining the network, berth's
	// networks included.
	File     string   `json:"file,omitempty"`
	Subnets  []Subnet `json:"subnets,omitempty"`
	Internal bool     `json:"internal,omitempty"`
	// DNS reports whether berth's resolver answers on the network's
	// gateway, resolving containers by name and alias.
	DNS bool `json:"dns,omitempty"`
	// Default marks the network containers join when they name none.
	Default bool `json:"default,omitempty"`
	// Bridge is the host bridge of a bridge network.
	Bridge    string            `json:"bridge,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Options   map[string]string `json:"options,omitempty"`
	CreatedAt time.Time         `json:"created_at,omitzero"`
	// Plugins are the CNI plugin types of the list, in order.
	Plugins    []string `json:"plugins"`
	CNIVersion string   `json:"cni_version"`
	// Ports reports whether the network can publish ports (its list has
	// a plugin with the portMappings capability).
	Ports bool `json:"ports,omitempty"`
	// Config is the CNI configuration list.
	Config []byte `json:"-"`
}

// Managed reports whether berth created the network (and may remove it).
func (n *Network) Managed() bool { return n.Source == SourceBerth }

// CreateRequest describes a network to create.
type CreateRequest struct {
	Name   string
	Driver string // DriverBridge when empty
	// Subnet is an IPv4 CIDR; empty picks a free one.
	Subnet string
	// Gateway defaults to the subnet's first address.
	Gateway  string
	Internal bool
	Labels   map[string]string
	Options  map[string]string
}

// IPConfig is one address a container got on a network.
type IPConfig struct {
	Address   netip.Prefix `json:"address"`
	Gateway   netip.Addr   `json:"gateway,omitzero"`
	Interface string       `json:"interface,omitempty"`
}

// Interface is one interface a CNI plugin made; Sandbox is the namespace
// path for interfaces inside the container, empty for host-side ones.
type Interface struct {
	Name    string `json:"name"`
	MAC     string `json:"mac,omitempty"`
	Sandbox string `json:"sandbox,omitempty"`
}

// AttachRequest joins a container's network namespace to a network.
type AttachRequest struct {
	// ContainerID names the container (or pod sandbox) in the context's
	// namespace.
	ContainerID string
	// Name is the container's name, resolvable by the network's DNS.
	Name string
	// Network is a name, ID or unique ID prefix; empty means the default
	// network.
	Network string
	// NetNS is the namespace path; empty means the container's sandbox
	// namespace (CreateSandbox).
	NetNS string
	// IfName is the interface inside the namespace; empty picks the
	// first free ethN.
	IfName  string
	Ports   []PortMapping
	Aliases []string
	// IP and MAC ask for a fixed address; unset lets the network choose.
	IP  netip.Addr
	MAC string
}

// Attachment is a container joined to a network.
type Attachment struct {
	Namespace   string `json:"namespace"`
	ContainerID string `json:"container_id"`
	Name        string `json:"name,omitempty"`
	Network     string `json:"network"`
	NetworkID   string `json:"network_id"`
	NetNS       string `json:"netns"`
	IfName      string `json:"ifname"`
	// Ports carry the host ports actually published.
	Ports      []PortMapping `json:"ports,omitempty"`
	Aliases    []string      `json:"aliases,omitempty"`
	IPs        []IPConfig    `json:"ips,omitempty"`
	Interfaces []Interface   `json:"interfaces,omitempty"`
	MAC        string        `json:"mac,omitempty"`
	CreatedAt  time.Time     `json:"created_at"`
}

// Addrs returns the attachment's addresses without prefix lengths.
func (a *Attachment) Addrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(a.IPs))
	for _, ip := range a.IPs {
		out = append(out, ip.Address.Addr())
	}
	return out
}

// SandboxRequest creates a container's network sandbox.
type SandboxRequest struct {
	// ID is the container (or pod sandbox) id in the context's
	// namespace.
	ID         string
	Hostname   string
	Domainname string
	DNS        DNSConfig
	// ExtraHosts are --add-host entries, "name:ip" or "name:host-gateway".
	ExtraHosts []string
	// HostNetwork shares the host's network: no namespace is made and the
	// files start from the host's.
	HostNetwork bool
	// NetNS joins an existing namespace (another container's, a pod's)
	// instead of creating one; RemoveSandbox leaves it in place.
	NetNS string
}

// Sandbox is a container's network sandbox. The runtime puts NetNS in the
// OCI spec's network namespace path and bind-mounts the three files over
// /etc/hosts, /etc/resolv.conf and /etc/hostname; berth rewrites the
// files in place when the container joins or leaves networks.
type Sandbox struct {
	Namespace  string    `json:"namespace"`
	ID         string    `json:"id"`
	NetNS      string    `json:"netns,omitempty"`
	OwnsNetNS  bool      `json:"owns_netns,omitempty"`
	Hostname   string    `json:"hostname,omitempty"`
	Domainname string    `json:"domainname,omitempty"`
	DNS        DNSConfig `json:"dns,omitzero"`
	ExtraHosts []string  `json:"extra_hosts,omitempty"`
	// HostNetwork sandboxes have no namespace of their own.
	HostNetwork    bool      `json:"host_network,omitempty"`
	HostsPath      string    `json:"hosts_path"`
	ResolvConfPath string    `json:"resolv_conf_path"`
	HostnamePath   string    `json:"hostname_path"`
	CreatedAt      time.Time `json:"created_at"`
}

// Manager is the network plugin's interface (plugin type
// io.berth.network.v1).
type Manager interface {
	// CreateNetwork creates a network; its name must be unused and its
	// subnet must not overlap another network's or a host route.
	CreateNetwork(ctx context.Context, req CreateRequest) (*Network, error)
	// Network finds a network by name, ID or unique ID prefix.
	Network(ctx context.Context, nameOrID string) (*Network, error)
	// Networks lists every network, berth's and the configuration
	// folder's.
	Networks(ctx context.Context) ([]*Network, error)
	// RemoveNetwork removes a network berth created; it fails with
	// ErrFailedPrecondition while containers are attached.
	RemoveNetwork(ctx context.Context, nameOrID string) error
	// PruneNetworks removes every berth-created network with no
	// containers, except the default one, returning their names.
	PruneNetworks(ctx context.Context) ([]string, error)

	// CreateSandbox makes a container's network namespace (unless the
	// request shares another's or the host's) and writes its hosts,
	// resolv.conf and hostname files.
	CreateSandbox(ctx context.Context, req SandboxRequest) (*Sandbox, error)
	// Sandbox returns a container's sandbox.
	Sandbox(ctx context.Context, id string) (*Sandbox, error)
	// Sandboxes lists the sandboxes of the context's namespace.
	Sandboxes(ctx context.Context) ([]*Sandbox, error)
	// RemoveSandbox detaches the container from every network, removes
	// its namespace (if berth made it) and its files. A container with no
	// sandbox but leftover attachments has those detached. It is the
	// cleanup the runtime calls for deleted and dead containers, and is
	// idempotent.
	RemoveSandbox(ctx context.Context, id string) error

	// Attach joins a container to a network, publishing ports; on error
	// nothing of the attachment is left.
	Attach(ctx context.Context, req AttachRequest) (*Attachment, error)
	// Detach removes a container from a network: interface, address
	// lease, published ports, firewall rules and DNS names.
	Detach(ctx context.Context, containerID, network string) error
	// Check asks the network's plugins whether the attachment is intact
	// (CNI CHECK).
	Check(ctx context.Context, containerID, network string) error
	// Attachments lists attachments: of one network across every
	// namespace when network is set, else of the context namespace's
	// container containerID, else all.
	Attachments(ctx context.Context, filter AttachmentFilter) ([]*Attachment, error)
}

// AttachmentFilter selects attachments.
type AttachmentFilter struct {
	// Network, by name, selects attachments to one network in every
	// namespace.
	Network string
	// ContainerID selects one container's attachments, in the context's
	// namespace.
	ContainerID string
}
