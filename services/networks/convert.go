package networks

import (
	"fmt"
	"net/netip"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/internal/protoconv"
	api "github.com/berthd/berth/proto/berth/networks/v1"
)

// NetworkToProto converts a network; withConfig adds its CNI list.
func NetworkToProto(n *network.Network, withConfig bool) *api.Network {
	out := &api.Network{
		Id: n.ID, Name: n.Name, Driver: n.Driver, Source: n.Source, File: n.File,
		Internal: n.Internal, Dns: n.DNS, IsDefault: n.Default, Bridge: n.Bridge,
		Labels: n.Labels, Options: n.Options, Plugins: n.Plugins,
		CniVersion: n.CNIVersion, Ports: n.Ports,
	}
	if !n.CreatedAt.IsZero() {
		out.CreatedAt = protoconv.Timestamp(n.CreatedAt)
	}
	for _, s := range n.Subnets {
		ps := &api.Subnet{Subnet: s.Subnet.String()}
		if s.Gateway.IsValid() {
			ps.Gateway = s.Gateway.String()
		}
		out.Subnets = append(out.Subnets, ps)
	}
	if withConfig {
		out.Config = n.Config
	}
	return out
}

// PortsToProto converts port mappings (from network.ParsePorts, say).
func PortsToProto(ms []network.PortMapping) []*api.PortMapping {
	out := make([]*api.PortMapping, 0, len(ms))
	for _, m := range ms {
		p := &api.PortMapping{HostPort: uint32(m.HostPort), HostPortEnd: uint32(m.HostPortEnd), ContainerPort: uint32(m.ContainerPort), Protocol: m.Protocol}
		if m.HostIP.IsValid() {
			p.HostIp = m.HostIP.String()
		}
		out = append(out, p)
	}
	return out
}

// PortsFromProto converts and checks port mappings from a request.
func PortsFromProto(ps []*api.PortMapping) ([]network.PortMapping, error) {
	out := make([]network.PortMapping, 0, len(ps))
	for i, p := range ps {
		if p.HostPort > 65535 || p.HostPortEnd > 65535 || p.ContainerPort > 65535 {
			return nil, fmt.Errorf("ports[%d]: port numbers must be at most 65535: %w", i, errdefs.ErrInvalidArgument)
		}
		m := network.PortMapping{HostPort: uint16(p.HostPort), HostPortEnd: uint16(p.HostPortEnd), ContainerPort: uint16(p.ContainerPort), Protocol: p.Protocol}
		if m.Protocol == "" {
			m.Protocol = "tcp"
		}
		if p.HostIp != "" {
			a, err := netip.ParseAddr(p.HostIp)
			if err != nil {
				return nil, fmt.Errorf("ports[%d]: host_ip %q is not an IP address: %w", i, p.HostIp, errdefs.ErrInvalidArgument)
			}
			m.HostIP = a
		}
		out = append(out, m)
	}
	return out, network.ValidatePorts(out)
}

// AttachmentToProto converts an attachment.
func AttachmentToProto(a *network.Attachment) *api.Attachment {
	out := &api.Attachment{
		Namespace: a.Namespace, ContainerId: a.ContainerID, Name: a.Name,
		Network: a.Network, NetworkId: a.NetworkID, Netns: a.NetNS, Ifname: a.IfName,
		Ports: PortsToProto(a.Ports), Aliases: a.Aliases, Mac: a.MAC,
		CreatedAt: protoconv.Timestamp(a.CreatedAt),
	}
	for _, ip := range a.IPs {
		pi := &api.IPConfig{Address: ip.Address.String(), Interface: ip.Interface}
		if ip.Gateway.IsValid() {
			pi.Gateway = ip.Gateway.String()
		}
		out.Ips = append(out.Ips, pi)
	}
	for _, i := range a.Interfaces {
		out.Interfaces = append(out.Interfaces, &api.Interface{Name: i.Name, Mac: i.MAC, Sandbox: i.Sandbox})
	}
	return out
}
