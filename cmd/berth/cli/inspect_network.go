package cli

import (
	"fmt"
	"strconv"
	"strings"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

// inspectPort is one host binding of a container port.
type inspectPort struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

// inspectEndpoint is the container on one network, as docker shows it.
type inspectEndpoint struct {
	Aliases     []string `json:"Aliases"`
	DNSNames    []string `json:"DNSNames"`
	NetworkID   string   `json:"NetworkID"`
	Interface   string   `json:"Interface,omitempty"`
	Gateway     string   `json:"Gateway"`
	IPAddress   string   `json:"IPAddress"`
	IPPrefixLen int      `json:"IPPrefixLen"`
	MacAddress  string   `json:"MacAddress"`
}

// inspectNetworks is docker's NetworkSettings: the first network's
// address at the top (docker's default-bridge fields), every network
// below, and the ports published now.
type inspectNetworks struct {
	SandboxKey  string                     `json:"SandboxKey"`
	Ports       map[string][]inspectPort   `json:"Ports"`
	IPAddress   string                     `json:"IPAddress"`
	IPPrefixLen int                        `json:"IPPrefixLen"`
	Gateway     string                     `json:"Gateway"`
	MacAddress  string                     `json:"MacAddress"`
	Networks    map[string]inspectEndpoint `json:"Networks"`
}

// inspectHostNetwork are HostConfig's network settings.
type inspectHostNetwork struct {
	NetworkMode     string                   `json:"NetworkMode"`
	PortBindings    map[string][]inspectPort `json:"PortBindings"`
	PublishAllPorts bool                     `json:"PublishAllPorts"`
	DNS             []string                 `json:"Dns"`
	DNSOptions      []string                 `json:"DnsOptions"`
	DNSSearch       []string                 `json:"DnsSearch"`
	ExtraHosts      []string                 `json:"ExtraHosts"`
}

// inspectPaths are the container's generated files.
type inspectPaths struct {
	ResolvConfPath string `json:"ResolvConfPath"`
	HostnamePath   string `json:"HostnamePath"`
	HostsPath      string `json:"HostsPath"`
}

func newInspectNetworks(ct *containersapi.Container) inspectNetworks {
	v := inspectNetworks{Ports: map[string][]inspectPort{}, Networks: map[string]inspectEndpoint{}}
	for _, p := range ct.Ports {
		k := fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)
		ip := p.HostIp
		if ip == "" {
			ip = "0.0.0.0"
		}
		v.Ports[k] = append(v.Ports[k], inspectPort{HostIP: ip, HostPort: strconv.Itoa(int(p.HostPort))})
	}
	ns := ct.NetworkSettings
	if ns == nil {
		return v
	}
	v.SandboxKey = ns.SandboxKey
	for i, e := range ns.Networks {
		ep := inspectEndpoint{
			Aliases: e.Aliases, DNSNames: e.DnsNames, NetworkID: e.NetworkId, Interface: e.Interface,
			Gateway: e.Gateway, IPAddress: e.IpAddress, IPPrefixLen: int(e.IpPrefixLen), MacAddress: e.MacAddress,
		}
		v.Networks[e.Network] = ep
		if i == 0 {
			v.IPAddress, v.IPPrefixLen, v.Gateway, v.MacAddress = ep.IPAddress, ep.IPPrefixLen, ep.Gateway, ep.MacAddress
		}
	}
	return v
}

func newInspectHostNetwork(ct *containersapi.Container) inspectHostNetwork {
	cfg := ct.Config
	v := inspectHostNetwork{PortBindings: map[string][]inspectPort{}, DNS: cfg.GetDns(), DNSOptions: cfg.GetDnsOptions(),
		DNSSearch: cfg.GetDnsSearch(), ExtraHosts: cfg.GetExtraHosts(), PublishAllPorts: cfg.GetPublishAll()}
	if ns := ct.NetworkSettings; ns != nil {
		v.NetworkMode = ns.Mode
	}
	for _, spec := range cfg.GetPublish() {
		ip, host, cont := splitPublished(spec)
		v.PortBindings[cont] = append(v.PortBindings[cont], inspectPort{HostIP: ip, HostPort: host})
	}
	return v
}

// splitPublished splits a recorded -p spec ("[ip:][host:]port/proto",
// no ranges of container ports) into docker's binding fields.
func splitPublished(spec string) (ip, host, container string) {
	i := strings.LastIndexByte(spec, ':')
	if i < 0 {
		return "", "", spec
	}
	container, rest := spec[i+1:], spec[:i]
	if j := strings.LastIndexByte(rest, ':'); j >= 0 {
		ip, host = strings.Trim(rest[:j], "[]"), rest[j+1:]
	} else {
		host = rest
	}
	return ip, host, container
}

func newInspectPaths(ct *containersapi.Container) inspectPaths {
	ns := ct.GetNetworkSettings()
	return inspectPaths{ResolvConfPath: ns.GetResolvConfPath(), HostnamePath: ns.GetHostnamePath(), HostsPath: ns.GetHostsPath()}
}
