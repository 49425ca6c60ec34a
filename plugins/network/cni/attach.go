package cni

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/netns"
	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/network/dns"
)

// pluginTimeout bounds one ADD, CHECK or DEL of a whole list. Plugins run
// detached from the caller's context: a client that goes away must not
// leave an attachment half made or half removed.
const pluginTimeout = 2 * time.Minute

var containerNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func validateAttach(req *network.AttachRequest) error {
	if err := identifiers.Validate(req.ContainerID); err != nil {
		return fmt.Errorf("container id: %w", err)
	}
	names := req.Aliases
	if req.Name != "" {
		names = append([]string{req.Name}, names...)
	}
	for _, n := range names {
		if len(n) > 253 || !containerNameRe.MatchString(n) {
			return fmt.Errorf("name or alias %q must be letters, digits, '_', '.' or '-': %w", n, errdefs.ErrInvalidArgument)
		}
	}
	if req.IfName != "" {
		if err := validateBridgeName(req.IfName); err != nil {
			return fmt.Errorf("interface: %w", err)
		}
	}
	if req.MAC != "" {
		if _, err := net.ParseMAC(req.MAC); err != nil {
			return fmt.Errorf("MAC address %q: %w", req.MAC, errdefs.ErrInvalidArgument)
		}
	}
	return network.ValidatePorts(req.Ports)
}

// Attach joins a container to a network.
func (m *Manager) Attach(ctx context.Context, req network.AttachRequest) (*network.Attachment, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateAttach(&req); err != nil {
		return nil, err
	}
	if req.Network == "" {
		if req.Network = m.cfg.DefaultNetwork; req.Network == "" {
			return nil, fmt.Errorf("the request names no network and no default network is configured: %w", errdefs.ErrInvalidArgument)
		}
	}
	n, err := m.Network(ctx, req.Network)
	if err != nil {
		return nil, err
	}
	if err := checkNetworkFits(n, &req); err != nil {
		return nil, err
	}
	unlockSB := m.locks.lock("sb:" + ns + "/" + req.ContainerID)
	defer unlockSB()
	sb, err := m.store.sandbox(ns, req.ContainerID)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	path, err := attachNetNS(sb, req)
	if err != nil {
		return nil, err
	}
	// The network's lock covers what berth shares between its attachments
	// (ports, interface names, the network's rules), not the plugins' ADD:
	// they lock what they share themselves (host-local its store, iptables
	// its xtables lock; the bridge is made if missing), so attachments to
	// one network are added side by side. A teardown of the network's last
	// attachment meanwhile sees this one and keeps the rules.
	unlockNet := m.locks.lock("net:" + n.Name)
	rec, err := m.beginAttach(ns, req, n, path)
	if err != nil {
		unlockNet()
		return nil, err
	}
	err = m.ensureNetworkRules(n)
	unlockNet()
	if err == nil {
		err = m.add(rec, n, req)
	}
	if err == nil {
		err = m.finishAttach(rec, sb)
	}
	if err != nil {
		m.undoAttach(rec)
		return nil, err
	}
	if sb != nil {
		if err := m.writeSandboxFiles(sb); err != nil {
			slog.Warn("update sandbox files", "container", ns+"/"+req.ContainerID, "error", err)
		}
	}
	out := rec.Attachment
	return &out, nil
}

func checkNetworkFits(n *network.Network, req *network.AttachRequest) error {
	if len(req.Ports) > 0 && !n.Ports {
		if n.Internal {
			return fmt.Errorf("network %s is internal: it cannot publish ports: %w", n.Name, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("network %s cannot publish ports (its CNI configuration has no plugin with the portMappings capability): %w", n.Name, errdefs.ErrInvalidArgument)
	}
	hasV6 := false
	for _, s := range n.Subnets {
		hasV6 = hasV6 || s.Subnet.Addr().Is6()
	}
	for _, p := range req.Ports {
		// portmap forwards a family only to containers with an address
		// of it: a port on an IPv6 host address would be reserved but
		// never reach the container.
		if p.HostIP.IsValid() && p.HostIP.Is6() && !p.HostIP.Is4In6() && !hasV6 {
			return fmt.Errorf("port %s: network %s has no IPv6 subnet to forward an IPv6 host address to: %w", p, n.Name, errdefs.ErrInvalidArgument)
		}
	}
	if req.IP.IsValid() {
		in := false
		for _, s := range n.Subnets {
			in = in || s.Subnet.Contains(req.IP)
		}
		if !in {
			return fmt.Errorf("address %s is outside the subnets of network %s: %w", req.IP, n.Name, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// attachNetNS is the namespace an attachment joins: the request's, else
// the container's sandbox's.
func attachNetNS(sb *network.Sandbox, req network.AttachRequest) (string, error) {
	path := req.NetNS
	if path == "" {
		switch {
		case sb == nil:
			return "", fmt.Errorf("container %s has no network sandbox and the request names no namespace: %w", req.ContainerID, errdefs.ErrFailedPrecondition)
		case sb.HostNetwork:
			return "", fmt.Errorf("container %s uses the host's network and cannot join network %s: %w", req.ContainerID, req.Network, errdefs.ErrFailedPrecondition)
		}
		path = sb.NetNS
	}
	if !netns.IsNetNS(path) {
		return "", fmt.Errorf("%s is not a network namespace: %w", path, errdefs.ErrInvalidArgument)
	}
	return path, nil
}

// beginAttach checks the attachment is new, picks its interface name,
// reserves its host ports and records it as being added.
func (m *Manager) beginAttach(ns string, req network.AttachRequest, n *network.Network, path string) (*attachmentRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := string(attachmentKey(ns, req.ContainerID, n.Name))
	if _, dup := m.atts[key]; dup {
		return nil, fmt.Errorf("container %s/%s is already attached to network %s: %w", ns, req.ContainerID, n.Name, errdefs.ErrAlreadyExists)
	}
	ifname, err := m.pickIfName(ns, req.ContainerID, req.IfName)
	if err != nil {
		return nil, err
	}
	var taken []holder
	for _, a := range m.atts {
		for _, p := range a.Ports {
			taken = append(taken, holder{att: a, port: p})
		}
	}
	ports, resv, err := allocatePorts(req.Ports, taken)
	if err != nil {
		return nil, err
	}
	rec := &attachmentRecord{
		Attachment: network.Attachment{
			Namespace: ns, ContainerID: req.ContainerID, Name: req.Name,
			Network: n.Name, NetworkID: n.ID, NetNS: path, IfName: ifname,
			Ports: ports, Aliases: req.Aliases, MAC: req.MAC,
			CreatedAt: time.Now().UTC(),
		},
		State:  stateAdding,
		CNIID:  cniID(ns, req.ContainerID),
		Config: n.Config,
	}
	if err := m.store.putAttachment(rec); err != nil {
		for _, r := range resv {
			r.release()
		}
		return nil, fmt.Errorf("record attachment: %w", err)
	}
	m.atts[key] = rec
	m.resv[key] = resv
	return rec, nil
}

func (m *Manager) pickIfName(ns, id, want string) (string, error) {
	used := map[string]bool{}
	for _, a := range m.atts {
		if a.Namespace == ns && a.ContainerID == id {
			used[a.IfName] = true
		}
	}
	if want != "" {
		if used[want] {
			return "", fmt.Errorf("container %s/%s already has an interface %s: %w", ns, id, want, errdefs.ErrAlreadyExists)
		}
		return want, nil
	}
	for i := 0; ; i++ {
		if name := fmt.Sprintf("eth%d", i); !used[name] {
			return name, nil
		}
	}
}

// undoAttach tears down an attachment that failed half-way.
func (m *Manager) undoAttach(rec *attachmentRecord) {
	unlock := m.locks.lock("net:" + rec.Network)
	defer unlock()
	if err := m.teardown(rec); err != nil {
		slog.Warn("undo failed attachment", "container", rec.Namespace+"/"+rec.ContainerID, "network", rec.Network, "error", err)
	}
}

// add runs the plugins' ADD.
func (m *Manager) add(rec *attachmentRecord, n *network.Network, req network.AttachRequest) error {
	list, err := libcni.NetworkConfFromBytes(rec.Config)
	if err != nil {
		return fmt.Errorf("network %s configuration: %w", n.Name, err)
	}
	rt := runtimeConf(rec)
	if req.IP.IsValid() {
		rt.CapabilityArgs["ips"] = []string{req.IP.String()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), pluginTimeout)
	defer cancel()
	var res cnitypes.Result
	err = retryBusy(func() error {
		var err error
		if res, err = m.cni.AddNetworkList(ctx, list, rt); err != nil && isBusy(err) {
			// Undo the partial ADD before trying again.
			m.cni.DelNetworkList(ctx, list, rt)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("attach %s/%s to network %s: %w", rec.Namespace, rec.ContainerID, n.Name, err)
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return fmt.Errorf("network %s: result of the plugins: %w", n.Name, err)
	}
	fillResult(rec, cur)
	return nil
}

func runtimeConf(rec *attachmentRecord) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID:    rec.CNIID,
		NetNS:          rec.NetNS,
		IfName:         rec.IfName,
		CapabilityArgs: map[string]any{},
	}
	if len(rec.Ports) > 0 {
		var pm []map[string]any
		for _, p := range rec.Ports {
			e := map[string]any{"hostPort": int(p.HostPort), "containerPort": int(p.ContainerPort), "protocol": p.Protocol}
			if p.HostIP.IsValid() {
				e["hostIP"] = p.HostIP.String()
			}
			pm = append(pm, e)
		}
		rt.CapabilityArgs["portMappings"] = pm
	}
	if rec.MAC != "" {
		rt.CapabilityArgs["mac"] = rec.MAC
	}
	if names := dnsNames(rec); len(names) > 0 {
		rt.CapabilityArgs["aliases"] = map[string][]string{rec.Network: names}
	}
	return rt
}

func fillResult(rec *attachmentRecord, res *types100.Result) {
	for _, i := range res.Interfaces {
		rec.Interfaces = append(rec.Interfaces, network.Interface{Name: i.Name, MAC: i.Mac, Sandbox: i.Sandbox})
	}
	for _, ip := range res.IPs {
		addr, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			continue
		}
		ones, _ := ip.Address.Mask.Size()
		c := network.IPConfig{Address: netip.PrefixFrom(addr.Unmap(), ones)}
		if gw, ok := netip.AddrFromSlice(ip.Gateway); ok {
			c.Gateway = gw.Unmap()
		}
		if ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(res.Interfaces) {
			c.Interface = res.Interfaces[*ip.Interface].Name
		}
		rec.IPs = append(rec.IPs, c)
	}
}

func dnsNames(rec *attachmentRecord) []string {
	var names []string
	if rec.Name != "" {
		names = append(names, rec.Name)
	}
	return append(names, rec.Aliases...)
}

// finishAttach marks the attachment ready and publishes its names.
func (m *Manager) finishAttach(rec *attachmentRecord, sb *network.Sandbox) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec.State = stateReady
	if err := m.store.putAttachment(rec); err != nil {
		return fmt.Errorf("record attachment: %w", err)
	}
	m.publishNames(rec, sb)
	return nil
}

// publishNames adds the attachment to its network's DNS, when the network
// has berth's resolver. Called with m.mu held.
func (m *Manager) publishNames(rec *attachmentRecord, sb *network.Sandbox) {
	if m.servers[rec.Network] == nil {
		return
	}
	e := dns.Entry{Network: rec.Network, Container: rec.Namespace + "/" + rec.ContainerID, Names: dnsNames(rec), Addrs: rec.Addrs()}
	if sb != nil && len(sb.DNS.Servers) > 0 {
		e.Upstreams = addrPorts(network.Upstreams(m.host.get(), sb.DNS))
	}
	m.table.Set(e)
}

// ensureNetworkRules installs berth's rules of a bridge network it
// manages, once per network while it has attachments, and cancels their
// pending removal. Called with the network's lock held.
func (m *Manager) ensureNetworkRules(n *network.Network) error {
	if !hasRules(n) {
		return nil
	}
	m.mu.Lock()
	if d := m.drops[n.Name]; d != nil {
		d.timer.Stop()
		delete(m.drops, n.Name)
	}
	up := m.rulesUp[n.Name]
	m.mu.Unlock()
	if up {
		return nil
	}
	if err := ensureRules(n); err != nil {
		return fmt.Errorf("install firewall rules of network %s: %w", n.Name, err)
	}
	m.mu.Lock()
	m.rulesUp[n.Name] = true
	m.mu.Unlock()
	return nil
}

// hasRules reports whether berth keeps rules for n: the bridge networks
// it manages.
func hasRules(n *network.Network) bool {
	return n.Managed() && n.Driver == network.DriverBridge && n.Bridge != ""
}

// Detach removes a container from a network.
func (m *Manager) Detach(ctx context.Context, id, netRef string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	unlockSB := m.locks.lock("sb:" + ns + "/" + id)
	defer unlockSB()
	rec, err := m.attachment(ctx, ns, id, netRef)
	if err != nil {
		return err
	}
	unlockNet := m.locks.lock("net:" + rec.Network)
	err = m.teardown(rec)
	unlockNet()
	if err != nil {
		return err
	}
	if sb, err := m.store.sandbox(ns, id); err == nil {
		if err := m.writeSandboxFiles(sb); err != nil {
			slog.Warn("update sandbox files", "container", ns+"/"+id, "error", err)
		}
	}
	return nil
}

// attachment finds a container's attachment to a network given by name,
// or by ID when no attachment has that name.
func (m *Manager) attachment(ctx context.Context, ns, id, netRef string) (*attachmentRecord, error) {
	m.mu.Lock()
	rec := m.atts[string(attachmentKey(ns, id, netRef))]
	m.mu.Unlock()
	if rec != nil {
		return rec, nil
	}
	if n, err := m.Network(ctx, netRef); err == nil {
		m.mu.Lock()
		rec = m.atts[string(attachmentKey(ns, id, n.Name))]
		m.mu.Unlock()
		if rec != nil {
			return rec, nil
		}
	}
	return nil, fmt.Errorf("container %s/%s is not attached to network %s: %w", ns, id, netRef, errdefs.ErrNotFound)
}

// teardown runs DEL for an attachment and forgets it: ports, names,
// record, and the network's rules when it was the last attachment. If DEL
// fails the record stays, so the teardown can be retried. Called with the
// network's lock held (or during recovery).
func (m *Manager) teardown(rec *attachmentRecord) error {
	list, err := libcni.NetworkConfFromBytes(rec.Config)
	if err != nil {
		return fmt.Errorf("network %s configuration of the attachment: %w", rec.Network, err)
	}
	rt := runtimeConf(rec)
	nsGone := !netns.IsNetNS(rec.NetNS)
	if nsGone {
		// The plugins handle an absent namespace; a path that is no
		// longer a namespace would make them fail.
		rt.NetNS = ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), pluginTimeout)
	defer cancel()
	// DEL is idempotent, so a transient firewall error (see retryBusy)
	// is retried rather than left to the caller.
	err = retryBusy(func() error { return m.cni.DelNetworkList(ctx, list, rt) })
	if err != nil {
		return fmt.Errorf("detach %s/%s from network %s: %w", rec.Namespace, rec.ContainerID, rec.Network, err)
	}
	if nsGone {
		if err := sweepNAT(rec.CNIID); err != nil {
			slog.Warn("remove leftover NAT rules", "container", rec.Namespace+"/"+rec.ContainerID, "error", err)
		}
	}
	key := string(attachmentKey(rec.Namespace, rec.ContainerID, rec.Network))
	m.mu.Lock()
	m.table.Remove(rec.Network, rec.Namespace+"/"+rec.ContainerID)
	for _, r := range m.resv[key] {
		r.release()
	}
	delete(m.resv, key)
	delete(m.atts, key)
	err = m.store.deleteAttachment(rec)
	last := true
	for _, a := range m.atts {
		if a.Network == rec.Network {
			last = false
			break
		}
	}
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("forget attachment: %w", err)
	}
	if last {
		return m.dropNetworkRules(rec)
	}
	return nil
}

// ruleGrace is how long a network's rules outlive its last attachment.
// `berth run --rm` cycles detach a network's only container and attach
// the next one a moment later: removing the rules between them and
// installing them again costs four iptables runs (some 20 ms each) per
// cycle.
const ruleGrace = 5 * time.Second

// pendingDrop is the removal of a network's rules, due when its timer
// fires unless an attachment to the network cancels it first.
type pendingDrop struct {
	net   *network.Network
	timer *time.Timer
}

// dropNetworkRules removes the rules of the attachment's network, its
// last attachment gone, after the grace (at once without one). The
// network is read from the attachment's own configuration, which
// outlives the file. Called with the network's lock held.
func (m *Manager) dropNetworkRules(rec *attachmentRecord) error {
	n, err := parseNetwork(rec.Config, "")
	if err != nil || !hasRules(n) {
		return nil
	}
	if m.dropGrace <= 0 {
		return m.removeNetworkRules(n)
	}
	d := &pendingDrop{net: n}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.drops[n.Name]; old != nil {
		old.timer.Stop()
	}
	d.timer = time.AfterFunc(m.dropGrace, func() { m.lateDrop(d) })
	m.drops[n.Name] = d
	return nil
}

// lateDrop removes the rules of a drop whose grace ended, unless it was
// cancelled meanwhile.
func (m *Manager) lateDrop(d *pendingDrop) {
	unlock := m.locks.lock("net:" + d.net.Name)
	defer unlock()
	m.runDrop(d)
}

// runDrop removes a pending drop's rules if it is still pending. Called
// with the network's lock held; the drop stays pending until its rules
// are gone, so flushDrops waits for one under way.
func (m *Manager) runDrop(d *pendingDrop) {
	m.mu.Lock()
	pending := m.drops[d.net.Name] == d
	m.mu.Unlock()
	if !pending {
		return
	}
	if err := m.removeNetworkRules(d.net); err != nil {
		slog.Warn("remove firewall rules of an idle network", "network", d.net.Name, "error", err)
	}
	m.mu.Lock()
	if m.drops[d.net.Name] == d {
		delete(m.drops, d.net.Name)
	}
	m.mu.Unlock()
}

// flushDrops removes now the rules of every pending drop.
func (m *Manager) flushDrops() {
	m.mu.Lock()
	names := make([]string, 0, len(m.drops))
	for name := range m.drops {
		names = append(names, name)
	}
	m.mu.Unlock()
	for _, name := range names {
		unlock := m.locks.lock("net:" + name)
		m.mu.Lock()
		d := m.drops[name]
		m.mu.Unlock()
		if d != nil {
			d.timer.Stop()
			m.runDrop(d)
		}
		unlock()
	}
}

// cancelDrop forgets a network's pending drop, when the caller removes
// its rules itself. Called with the network's lock held.
func (m *Manager) cancelDrop(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.drops[name]; d != nil {
		d.timer.Stop()
		delete(m.drops, name)
	}
}

// removeNetworkRules removes n's rules now. Called with the network's
// lock held.
func (m *Manager) removeNetworkRules(n *network.Network) error {
	if err := removeRules(n); err != nil {
		return fmt.Errorf("remove firewall rules of network %s: %w", n.Name, err)
	}
	m.mu.Lock()
	delete(m.rulesUp, n.Name)
	m.mu.Unlock()
	return nil
}

// Check runs the plugins' CHECK on an attachment.
func (m *Manager) Check(ctx context.Context, id, netRef string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	rec, err := m.attachment(ctx, ns, id, netRef)
	if err != nil {
		return err
	}
	if !netns.IsNetNS(rec.NetNS) {
		return fmt.Errorf("attachment of %s/%s to %s: namespace %s is gone: %w", ns, id, rec.Network, rec.NetNS, errdefs.ErrFailedPrecondition)
	}
	list, err := libcni.NetworkConfFromBytes(rec.Config)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, pluginTimeout)
	defer cancel()
	if err := m.cni.CheckNetworkList(cctx, list, runtimeConf(rec)); err != nil {
		return fmt.Errorf("check %s/%s on network %s: %w: %w", ns, id, rec.Network, err, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// Attachments lists attachments (see network.AttachmentFilter).
func (m *Manager) Attachments(ctx context.Context, f network.AttachmentFilter) ([]*network.Attachment, error) {
	var ns string
	if f.ContainerID != "" {
		var err error
		if ns, err = namespaces.NamespaceRequired(ctx); err != nil {
			return nil, err
		}
	}
	netName := f.Network
	if netName != "" {
		if n, err := m.Network(ctx, netName); err == nil {
			netName = n.Name
		}
	}
	m.mu.Lock()
	var out []*network.Attachment
	for _, a := range m.atts {
		if a.State != stateReady || (netName != "" && a.Network != netName) ||
			(f.ContainerID != "" && (a.Namespace != ns || a.ContainerID != f.ContainerID)) {
			continue
		}
		c := a.Attachment
		out = append(out, &c)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return strings.Join([]string{a.Namespace, a.ContainerID, a.IfName}, "\x00") < strings.Join([]string{b.Namespace, b.ContainerID, b.IfName}, "\x00")
	})
	return out, nil
}
