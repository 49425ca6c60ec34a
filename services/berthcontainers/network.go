package berthcontainers

import (
	"context"
	"net/netip"
	"strconv"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/run"
	api "github.com/berthd/berth/proto/berth/containers/v1"
)

// networkFromProto reads the network settings of a create request into
// o; port specs are parsed here (InvalidArgument naming the bad one).
func networkFromProto(c *api.Config, o *run.Options) error {
	ports, err := network.ParsePorts(c.Publish...)
	if err != nil {
		return err
	}
	o.Ports = run.PortsFromMappings(ports)
	o.Networks = c.Networks
	o.Network = run.NetworkOptions{
		IP: c.Ip, MAC: c.MacAddress, DNS: c.Dns, DNSSearch: c.DnsSearch, DNSOptions: c.DnsOptions,
		ExtraHosts: c.ExtraHosts, PublishAll: c.PublishAll,
	}
	if len(c.NetworkAliases) > 0 {
		// Aliases are for the first network, by the name the caller gave
		// ("" for the default): core resolves it.
		first := ""
		if len(c.Networks) > 0 {
			first = c.Networks[0]
		}
		o.Network.Aliases = map[string][]string{first: c.NetworkAliases}
	}
	return nil
}

// networkToProto writes o's network settings into c.
func networkToProto(o run.Options, c *api.Config) {
	c.Networks = o.Networks
	for _, p := range o.Ports {
		c.Publish = append(c.Publish, portSpec(p))
	}
	n := o.Network
	c.PublishAll, c.Ip, c.MacAddress = n.PublishAll, n.IP, n.MAC
	c.Dns, c.DnsSearch, c.DnsOptions, c.ExtraHosts = n.DNS, n.DNSSearch, n.DNSOptions, n.ExtraHosts
	if len(o.Networks) > 0 {
		c.NetworkAliases = n.Aliases[o.Networks[0]]
	}
}

// portSpec writes a port back as a -p spec.
func portSpec(p run.Port) string {
	s := strconv.Itoa(p.ContainerPort) + "/" + p.Protocol
	if p.HostPort == 0 && p.HostIP == "" {
		return s
	}
	host := ""
	if p.HostPort != 0 {
		host = strconv.Itoa(p.HostPort)
		if p.HostPortEnd > p.HostPort {
			host += "-" + strconv.Itoa(p.HostPortEnd)
		}
	}
	if p.HostIP != "" {
		ip := p.HostIP
		if a, err := netip.ParseAddr(ip); err == nil && a.Is6() {
			ip = "[" + ip + "]"
		}
		return ip + ":" + host + ":" + s
	}
	return host + ":" + s
}

// withNetwork fills c's published ports and network settings from st.
func withNetwork(c *api.Container, r run.Record, st run.NetworkStatus) {
	c.Ports = nil
	for _, p := range st.Ports() {
		ip := ""
		if p.HostIP.IsValid() {
			ip = p.HostIP.String()
		}
		c.Ports = append(c.Ports, &api.Port{HostIp: ip, HostPort: int32(p.HostPort), ContainerPort: int32(p.ContainerPort), Protocol: p.Protocol})
	}
	ns := &api.NetworkSettings{Mode: run.NetworkMode(r.Config.Options)}
	if sb := st.Sandbox; sb != nil {
		ns.SandboxKey, ns.HostsPath, ns.ResolvConfPath, ns.HostnamePath = sb.NetNS, sb.HostsPath, sb.ResolvConfPath, sb.HostnamePath
	}
	connected := map[string]bool{}
	for _, a := range st.Attachments {
		connected[a.Network] = true
		ns.Networks = append(ns.Networks, endpoint(a))
	}
	// Networks the container joins at its next start.
	if !run.IsNetworkMode(ns.Mode) {
		for _, n := range r.Config.Options.Networks {
			if !connected[n] {
				ns.Networks = append(ns.Networks, &api.Endpoint{Network: n, Aliases: r.Config.Options.Network.Aliases[n]})
			}
		}
	}
	c.NetworkSettings = ns
	c.Networks = r.Config.Options.Networks
}

func endpoint(a *network.Attachment) *api.Endpoint {
	e := &api.Endpoint{
		Network: a.Network, NetworkId: a.NetworkID, Interface: a.IfName, MacAddress: a.MAC,
		Aliases: a.Aliases, Connected: true,
	}
	if a.Name != "" {
		e.DnsNames = append(e.DnsNames, a.Name)
	}
	e.DnsNames = append(e.DnsNames, a.Aliases...)
	for _, ip := range a.IPs {
		if e.IpAddress == "" && (ip.Interface == "" || ip.Interface == a.IfName) {
			e.IpAddress, e.IpPrefixLen = ip.Address.Addr().String(), int32(ip.Address.Bits())
			if ip.Gateway.IsValid() {
				e.Gateway = ip.Gateway.String()
			}
		}
	}
	if e.MacAddress == "" {
		for _, i := range a.Interfaces {
			if i.Name == a.IfName && i.Sandbox != "" {
				e.MacAddress = i.MAC
			}
		}
	}
	return e
}

// Connect joins a container to a network.
func (s *Service) Connect(ctx context.Context, req *api.ConnectRequest) (*emptypb.Empty, error) {
	return empty, s.m.Connect(ctx, req.Id, req.Network, req.Aliases)
}

// Disconnect takes a container off a network.
func (s *Service) Disconnect(ctx context.Context, req *api.DisconnectRequest) (*emptypb.Empty, error) {
	return empty, s.m.Disconnect(ctx, req.Id, req.Network, req.Force)
}
