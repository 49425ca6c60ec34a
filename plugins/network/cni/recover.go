package cni

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/netns"
	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/network/dns"
)

// startDNS starts the resolver of a network on its gateway. A failure
// (another program holding port 53 on that address) is logged and leaves
// the network without embedded DNS: containers then get the host's
// resolvers. Called with m.mu held.
func (m *Manager) startDNS(n *network.Network) {
	if m.servers[n.Name] != nil || len(n.Subnets) == 0 || !n.Subnets[0].Gateway.IsValid() {
		return
	}
	var clients []netip.Prefix
	for _, s := range n.Subnets {
		clients = append(clients, s.Subnet)
	}
	s, err := dns.Listen(dns.Config{
		Network:   n.Name,
		Addr:      n.Subnets[0].Gateway,
		Port:      53,
		Clients:   clients,
		Table:     m.table,
		Forward:   m.upstreams,
		NoForward: n.Internal,
	})
	if err != nil {
		slog.Warn("embedded DNS unavailable; containers on this network will use the host's resolvers", "network", n.Name, "error", err)
		return
	}
	m.servers[n.Name] = s
}

// recover takes over the attachments of a previous run. Attachments whose
// ADD was interrupted, or whose namespace is gone (the container died
// while berthd was down and its namespace was removed), are torn down;
// the others get their port reservations, DNS names and firewall rules
// back.
func (m *Manager) recover(ctx context.Context) error {
	nets, err := m.Networks(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	for _, n := range nets {
		if n.DNS && n.Managed() {
			m.startDNS(n)
		}
	}
	m.mu.Unlock()
	recs, err := m.store.attachments()
	if err != nil {
		return err
	}
	var stale []*attachmentRecord
	for _, rec := range recs {
		key := string(attachmentKey(rec.Namespace, rec.ContainerID, rec.Network))
		m.atts[key] = rec
		if rec.State != stateReady || !netns.IsNetNS(rec.NetNS) {
			stale = append(stale, rec)
			continue
		}
		m.restore(key, rec, nets)
	}
	for _, rec := range stale {
		slog.Info("tearing down a stale attachment", "container", rec.Namespace+"/"+rec.ContainerID, "network", rec.Network, "state", rec.State, "netns", rec.NetNS)
		if err := m.teardown(rec); err != nil {
			slog.Warn("tear down stale attachment", "container", rec.Namespace+"/"+rec.ContainerID, "network", rec.Network, "error", err)
		}
	}
	return nil
}

func (m *Manager) restore(key string, rec *attachmentRecord, nets []*network.Network) {
	for _, p := range rec.Ports {
		r, _, err := reservePort(p, p.HostPort)
		if err != nil {
			slog.Warn("re-reserve published port", "container", rec.Namespace+"/"+rec.ContainerID, "port", p.String(), "error", err)
			continue
		}
		m.resv[key] = append(m.resv[key], r)
	}
	sb, err := m.store.sandbox(rec.Namespace, rec.ContainerID)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		slog.Warn("read sandbox", "container", rec.Namespace+"/"+rec.ContainerID, "error", err)
	}
	m.publishNames(rec, sb)
	if m.rulesUp[rec.Network] {
		return
	}
	// The rules are the network's as its list is now (new attachments
	// will follow it), not as this attachment recorded it: the list may
	// have changed since (see upgradeLists).
	n, err := findByName(nets, rec.Network)
	if err != nil {
		n, err = parseNetwork(rec.Config, "")
	}
	if err != nil || !hasRules(n) {
		return
	}
	if err := ensureRules(n); err != nil {
		slog.Warn("restore firewall rules", "network", n.Name, "error", err)
		return
	}
	m.rulesUp[rec.Network] = true
}
