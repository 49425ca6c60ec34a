package cni

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/netns"
	"github.com/berthd/berth/core/network"
)

// hostsPath is the host's hosts file, the start of host-network
// containers' own.
const hostsPath = "/etc/hosts"

func validateSandbox(req *network.SandboxRequest) error {
	if err := identifiers.Validate(req.ID); err != nil {
		return fmt.Errorf("container id: %w", err)
	}
	if req.Hostname == "" && !req.HostNetwork {
		req.Hostname = req.ID
		if len(req.Hostname) > 12 {
			req.Hostname = req.Hostname[:12]
		}
	}
	if req.Hostname != "" {
		if err := network.ValidateHostname(req.Hostname); err != nil {
			return err
		}
	}
	if req.Domainname != "" {
		if err := network.ValidateHostname(req.Domainname); err != nil {
			return fmt.Errorf("domain name: %w", err)
		}
	}
	if err := req.DNS.Validate(); err != nil {
		return err
	}
	for _, h := range req.ExtraHosts {
		if _, err := network.ParseExtraHost(h); err != nil {
			return err
		}
	}
	if req.HostNetwork && req.NetNS != "" {
		return fmt.Errorf("a sandbox on the host's network cannot also join namespace %s: %w", req.NetNS, errdefs.ErrInvalidArgument)
	}
	if req.NetNS != "" && !netns.IsNetNS(req.NetNS) {
		return fmt.Errorf("%s is not a network namespace: %w", req.NetNS, errdefs.ErrInvalidArgument)
	}
	return nil
}

// CreateSandbox makes a container's namespace and files.
func (m *Manager) CreateSandbox(ctx context.Context, req network.SandboxRequest) (_ *network.Sandbox, err error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateSandbox(&req); err != nil {
		return nil, err
	}
	unlock := m.locks.lock("sb:" + ns + "/" + req.ID)
	defer unlock()
	if _, err := m.store.sandbox(ns, req.ID); err == nil {
		return nil, fmt.Errorf("network sandbox of container %s/%s: %w", ns, req.ID, errdefs.ErrAlreadyExists)
	}
	dir := m.sandboxDir(ns, req.ID)
	sb := &network.Sandbox{
		Namespace: ns, ID: req.ID,
		Hostname: req.Hostname, Domainname: req.Domainname,
		DNS: req.DNS, ExtraHosts: req.ExtraHosts, HostNetwork: req.HostNetwork,
		NetNS:          req.NetNS,
		HostsPath:      filepath.Join(dir, "hosts"),
		ResolvConfPath: filepath.Join(dir, "resolv.conf"),
		HostnamePath:   filepath.Join(dir, "hostname"),
		CreatedAt:      time.Now().UTC(),
	}
	defer func() {
		if err != nil {
			m.removeSandboxFiles(sb)
		}
	}()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("create sandbox folder: %w", err)
	}
	if !req.HostNetwork && req.NetNS == "" {
		sb.NetNS, sb.OwnsNetNS = m.netnsPath(ns, req.ID), true
		// A namespace left by a crash between its creation and its
		// record is stale: nothing can be attached to it.
		if err := netns.Remove(sb.NetNS); err != nil {
			return nil, err
		}
		if err := netns.Create(sb.NetNS); err != nil {
			return nil, fmt.Errorf("container %s/%s: %w", ns, req.ID, err)
		}
	}
	if err := m.writeSandboxFiles(sb); err != nil {
		return nil, err
	}
	if err := m.store.putSandbox(sb); err != nil {
		return nil, fmt.Errorf("record sandbox: %w", err)
	}
	out := *sb
	return &out, nil
}

func (m *Manager) removeSandboxFiles(sb *network.Sandbox) error {
	var errs []error
	if sb.OwnsNetNS {
		errs = append(errs, netns.Remove(sb.NetNS))
		os.Remove(filepath.Dir(sb.NetNS)) // the namespace's folder, when empty
	}
	dir := m.sandboxDir(sb.Namespace, sb.ID)
	errs = append(errs, os.RemoveAll(dir))
	os.Remove(filepath.Dir(dir))
	return errors.Join(errs...)
}

// Sandbox returns a container's sandbox.
func (m *Manager) Sandbox(ctx context.Context, id string) (*network.Sandbox, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	return m.store.sandbox(ns, id)
}

// Sandboxes lists the context namespace's sandboxes.
func (m *Manager) Sandboxes(ctx context.Context) ([]*network.Sandbox, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	out, err := m.store.sandboxes(ns)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// RemoveSandbox detaches a container from every network, then removes its
// namespace and files.
func (m *Manager) RemoveSandbox(ctx context.Context, id string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	unlock := m.locks.lock("sb:" + ns + "/" + id)
	defer unlock()
	sb, err := m.store.sandbox(ns, id)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	var errs []error
	for _, rec := range m.containerRecords(ns, id, false) {
		unlockNet := m.locks.lock("net:" + rec.Network)
		errs = append(errs, m.teardown(rec))
		unlockNet()
	}
	if err := errors.Join(errs...); err != nil {
		// The namespace stays so the detach can be retried: DEL needs it
		// to find the interfaces and addresses to remove.
		return err
	}
	if sb == nil {
		// No record: still remove what a crash between creating the
		// namespace and recording it may have left.
		sb = &network.Sandbox{Namespace: ns, ID: id, NetNS: m.netnsPath(ns, id), OwnsNetNS: true}
	}
	if err := m.removeSandboxFiles(sb); err != nil {
		return fmt.Errorf("remove sandbox of %s/%s: %w", ns, id, err)
	}
	return m.store.deleteSandbox(ns, id)
}

// containerRecords returns a container's attachments in interface order;
// readyOnly leaves out those being added.
func (m *Manager) containerRecords(ns, id string, readyOnly bool) []*attachmentRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recordsOf(ns, id, readyOnly)
}

// recordsOf is containerRecords with m.mu held.
func (m *Manager) recordsOf(ns, id string, readyOnly bool) []*attachmentRecord {
	var out []*attachmentRecord
	for _, a := range m.atts {
		if a.Namespace == ns && a.ContainerID == id && (!readyOnly || a.State == stateReady) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return ifIndex(out[i].IfName) < ifIndex(out[j].IfName) })
	return out
}

// ifIndex orders eth0 < eth1 < eth10 and other names after.
func ifIndex(name string) string {
	var n int
	if _, err := fmt.Sscanf(name, "eth%d", &n); err == nil {
		return fmt.Sprintf("%08d", n)
	}
	return "~" + name
}

// writeSandboxFiles (re)writes a sandbox's hosts, resolv.conf and hostname
// in place from its settings and current attachments.
func (m *Manager) writeSandboxFiles(sb *network.Sandbox) error {
	hosts, resolv, hostname, err := m.sandboxFiles(sb)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{sb.HostsPath, hosts}, {sb.ResolvConfPath, resolv}, {sb.HostnamePath, hostname}} {
		if err := network.WriteInPlace(f.path, f.data); err != nil {
			return err
		}
	}
	return nil
}

func (m *Manager) sandboxFiles(sb *network.Sandbox) (hosts, resolv, hostname []byte, err error) {
	var extra []network.ExtraHost
	for _, h := range sb.ExtraHosts {
		e, err := network.ParseExtraHost(h)
		if err != nil {
			return nil, nil, nil, err
		}
		extra = append(extra, e)
	}
	host := m.host.get()
	if sb.HostNetwork {
		return m.hostNetworkFiles(sb, host, extra)
	}
	cfg := network.HostsConfig{Hostname: sb.Hostname, Domainname: sb.Domainname, Extra: extra}
	var embedded []netip.Addr
	m.mu.Lock()
	for _, a := range m.recordsOf(sb.Namespace, sb.ID, true) {
		cfg.Addrs = append(cfg.Addrs, a.Addrs()...)
		for _, ip := range a.IPs {
			if !cfg.Gateway.IsValid() && ip.Gateway.IsValid() {
				cfg.Gateway = ip.Gateway
			}
		}
		if s := m.servers[a.Network]; s != nil {
			embedded = append(embedded, s.Addr().Addr())
		}
	}
	m.mu.Unlock()
	rc, err := network.ContainerResolvConf(host, sb.DNS, embedded)
	if err != nil {
		return nil, nil, nil, err
	}
	return network.HostsFile(cfg), rc.Bytes(), []byte(sb.Hostname + "\n"), nil
}

// hostNetworkFiles starts from the host's own files, as Docker does for
// --network host: the container shares the host's names and resolvers.
func (m *Manager) hostNetworkFiles(sb *network.Sandbox, host network.ResolvConf, extra []network.ExtraHost) (hosts, resolv, hostname []byte, err error) {
	hosts, err = readBounded(hostsPath)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(hosts) > 0 && hosts[len(hosts)-1] != '\n' {
		hosts = append(hosts, '\n')
	}
	for _, e := range extra {
		if e.Addr.IsValid() {
			hosts = append(hosts, fmt.Sprintf("%s\t%s\n", e.Addr, e.Name)...)
		} else {
			hosts = append(hosts, fmt.Sprintf("127.0.0.1\t%s\n", e.Name)...)
		}
	}
	rc := host
	if len(sb.DNS.Servers) > 0 {
		rc.Nameservers = network.Upstreams(host, sb.DNS)
	}
	if len(sb.DNS.Search) > 0 || len(sb.DNS.Options) > 0 {
		merged, err := network.ContainerResolvConf(host, network.DNSConfig{Search: sb.DNS.Search, Options: sb.DNS.Options}, rc.Nameservers)
		if err != nil {
			return nil, nil, nil, err
		}
		rc = merged
	}
	name := sb.Hostname
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return nil, nil, nil, fmt.Errorf("read host name: %w", err)
		}
	}
	return hosts, rc.Bytes(), []byte(name + "\n"), nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfSize))
	if err != nil {
		slog.Warn("read host file", "file", path, "error", err)
	}
	return data, err
}
