// Package cni is berth's network plugin (io.berth.network.v1): networks
// are CNI configuration lists run through libcni with the standard plugins
// (bridge, host-local, portmap, macvlan, ipvlan) or any third-party ones a
// user configures; berth adds network namespaces, published-port
// reservations, isolation rules between its bridge networks, an embedded
// DNS per user network, per-container hosts/resolv.conf/hostname files,
// and records that let teardown work after berthd restarts or crashes.
package cni

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"

	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/network/dns"
)

// Manager implements network.Manager over CNI.
type Manager struct {
	cfg   Config
	state string
	conf  *confDir
	cni   *libcni.CNIConfig
	store *store
	table *dns.Table
	host  hostResolv
	locks keyedLocks

	// createMu makes network creation one at a time, so two creations
	// cannot pick the same subnet or name.
	createMu sync.Mutex

	mu      sync.Mutex
	atts    map[string]*attachmentRecord // by attachmentKey
	resv    map[string][]*reservation    // by attachmentKey
	servers map[string]*dns.Server       // by network name
	rulesUp map[string]bool              // networks whose rules are in place
	drops   map[string]*pendingDrop      // by network name: rules to remove after the grace

	// dropGrace is how long a network's rules outlive its last
	// attachment (ruleGrace; zero removes them at once). Set before
	// the manager is used.
	dropGrace time.Duration
}

var _ network.Manager = (*Manager)(nil)

// New opens the plugin's records under state, writes the default network
// when it is absent, and recovers the attachments of a previous run.
func New(ctx context.Context, cfg Config, state string) (*Manager, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for _, dir := range []string{state, filepath.Join(state, "ipam"), filepath.Join(state, "cache")} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("create network state folder: %w", err)
		}
	}
	st, err := openStore(filepath.Join(state, "network.db"))
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:     cfg,
		state:   state,
		conf:    newConfDir(cfg.ConfDir),
		cni:     libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, filepath.Join(state, "cache"), nil),
		store:   st,
		table:   dns.NewTable(),
		host:    hostResolv{path: cfg.ResolvConf},
		atts:    map[string]*attachmentRecord{},
		resv:    map[string][]*reservation{},
		servers: map[string]*dns.Server{},
		rulesUp: map[string]bool{},
		drops:   map[string]*pendingDrop{},
	}
	if err := m.writeDefaultNetwork(); err != nil {
		st.close()
		return nil, err
	}
	if err := m.upgradeLists(); err != nil {
		st.close()
		return nil, err
	}
	// Recovery removes the rules of networks whose stale attachments it
	// tears down at once: no run cycle is under way to keep them for.
	if err := m.recover(ctx); err != nil {
		m.Close()
		return nil, err
	}
	m.dropGrace = ruleGrace
	return m, nil
}

// Close stops the DNS servers and releases port reservations. Attachments
// stay: containers keep their network while berthd is down, and the
// records let the next berthd take them over. Bridges of berth's
// networks without containers are removed (the bridge plugin makes them
// again on the next attachment), so a stopped berthd leaves no idle
// interfaces behind; neither does it leave the rules of networks whose
// last attachment went during the grace.
func (m *Manager) Close() error {
	m.flushDrops()
	m.removeIdleBridges()
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, s := range m.servers {
		s.Close()
		delete(m.servers, name)
	}
	for k, rs := range m.resv {
		for _, r := range rs {
			r.release()
		}
		delete(m.resv, k)
	}
	return m.store.close()
}

func (m *Manager) removeIdleBridges() {
	nets, err := m.conf.networks()
	if err != nil {
		return
	}
	for _, n := range nets {
		if !n.Managed() || n.Driver != network.DriverBridge || n.Bridge == "" || len(m.users(n.Name)) > 0 {
			continue
		}
		if _, err := os.Stat(filepath.Join("/sys/class/net", n.Bridge)); err != nil {
			continue
		}
		if err := deleteLink(n.Bridge); err != nil {
			slog.Warn("remove idle bridge", "network", n.Name, "bridge", n.Bridge, "error", err)
		}
	}
}

func (m *Manager) ipamDir() string { return filepath.Join(m.state, "ipam") }

func (m *Manager) netnsPath(ns, id string) string {
	return filepath.Join(m.state, "netns", ns, id)
}

func (m *Manager) sandboxDir(ns, id string) string {
	return filepath.Join(m.state, "sandboxes", ns, id)
}

// cniID is the container id the plugins see: unique across namespaces
// ("--" cannot occur in a namespace name).
func cniID(ns, id string) string { return ns + "--" + id }

// writeDefaultNetwork writes the default network's list when no file
// defines a network of that name.
func (m *Manager) writeDefaultNetwork() error {
	name := m.cfg.DefaultNetwork
	if name == "" {
		return nil
	}
	nets, err := m.conf.networks()
	if err != nil {
		return err
	}
	if _, err := findByName(nets, name); err == nil {
		return nil
	}
	subnet, _ := parseSubnet(m.cfg.DefaultSubnet)
	meta := berthMeta{
		ID:      newID(),
		Driver:  network.DriverBridge,
		Default: true,
		Options: map[string]string{network.OptionBridge: m.cfg.DefaultBridge},
		Created: time.Now().UTC(),
	}
	data, err := managedList(name, meta, subnet, subnet.Addr().Next(), m.ipamDir())
	if err != nil {
		return err
	}
	if err := m.writeConf(name, data); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
		return err
	}
	slog.Info("wrote the default network", "network", name, "subnet", subnet, "bridge", m.cfg.DefaultBridge)
	return nil
}

func findByName(nets []*network.Network, name string) (*network.Network, error) {
	for _, n := range nets {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("network %q: %w", name, errdefs.ErrNotFound)
}

// confPath is where berth writes the list of a network it creates.
func (m *Manager) confPath(name string) string {
	return filepath.Join(m.cfg.ConfDir, "berth-"+name+".conflist")
}

// writeConf writes a list atomically and exclusively: a temporary file
// (whose extension CNI readers skip) hard-linked to its final name.
func (m *Manager) writeConf(name string, data []byte) error {
	if err := os.MkdirAll(m.cfg.ConfDir, 0o755); err != nil {
		return fmt.Errorf("create network configuration folder: %w", err)
	}
	tmp, err := os.CreateTemp(m.cfg.ConfDir, ".berth-"+name+"-*.tmp")
	if err != nil {
		return fmt.Errorf("write network %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write network %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write network %s: %w", name, err)
	}
	tmp.Close()
	if err := os.Link(tmp.Name(), m.confPath(name)); err != nil {
		if os.IsExist(err) {
			return fmt.Errorf("file %s already exists: %w", m.confPath(name), errdefs.ErrAlreadyExists)
		}
		return fmt.Errorf("write network %s: %w", name, err)
	}
	return nil
}

// keyedLocks hands out one mutex per key, dropped when unused.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	refs int
}

func (k *keyedLocks) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// hostResolv reads the host's resolver configuration, again only when the
// file changed.
type hostResolv struct {
	path string
	mu   sync.Mutex
	mod  time.Time
	rc   network.ResolvConf
}

func (h *hostResolv) get() network.ResolvConf {
	h.mu.Lock()
	defer h.mu.Unlock()
	info, err := os.Stat(h.path)
	if err == nil && info.ModTime().Equal(h.mod) {
		return h.rc
	}
	rc, err := network.HostResolvConf(h.path)
	if err != nil {
		slog.Warn("read host resolver configuration", "file", h.path, "error", err)
	}
	if info != nil {
		h.mod = info.ModTime()
	}
	h.rc = rc
	return rc
}

// upstreams are the embedded DNS's default forwarders.
func (m *Manager) upstreams() []netip.AddrPort {
	if fw, _ := m.cfg.forwarders(); len(fw) > 0 {
		return fw
	}
	return addrPorts(m.host.get().Nameservers)
}

func addrPorts(addrs []netip.Addr) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.AddrPortFrom(a, 53))
	}
	return out
}
