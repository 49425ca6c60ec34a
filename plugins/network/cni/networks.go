package cni

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/network"
)

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Networks lists every network of the configuration folder.
func (m *Manager) Networks(ctx context.Context) ([]*network.Network, error) {
	nets, err := m.conf.networks()
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if n.Name == m.cfg.DefaultNetwork {
			n.Default = true
		}
	}
	return nets, nil
}

// Network finds one network by name, ID or unique ID prefix.
func (m *Manager) Network(ctx context.Context, ref string) (*network.Network, error) {
	nets, err := m.Networks(ctx)
	if err != nil {
		return nil, err
	}
	return findNetwork(nets, ref)
}

// CreateNetwork writes a new network's configuration list.
func (m *Manager) CreateNetwork(ctx context.Context, req network.CreateRequest) (*network.Network, error) {
	if err := validateName(req.Name); err != nil {
		return nil, err
	}
	if req.Driver == "" {
		req.Driver = network.DriverBridge
	}
	if err := validateOptions(req.Driver, req.Options); err != nil {
		return nil, err
	}
	m.createMu.Lock()
	defer m.createMu.Unlock()
	nets, err := m.Networks(ctx)
	if err != nil {
		return nil, err
	}
	if n, err := findByName(nets, req.Name); err == nil {
		return nil, fmt.Errorf("network %q already exists (source %s): %w", req.Name, n.Source, errdefs.ErrAlreadyExists)
	}
	routes := hostRoutes()
	subnet, err := pickSubnet(req.Subnet, nets, routes)
	if err != nil {
		return nil, err
	}
	gateway, err := pickGateway(subnet, req.Gateway)
	if err != nil {
		return nil, err
	}
	meta := berthMeta{
		ID:       newID(),
		Driver:   req.Driver,
		Internal: req.Internal,
		DNS:      req.Driver == network.DriverBridge,
		Labels:   req.Labels,
		Options:  map[string]string{},
		Created:  time.Now().UTC(),
	}
	for k, v := range req.Options {
		meta.Options[k] = v
	}
	if req.Driver == network.DriverBridge {
		if err := m.pickBridge(&meta, nets); err != nil {
			return nil, err
		}
	}
	data, err := managedList(req.Name, meta, subnet, gateway, m.ipamDir())
	if err != nil {
		return nil, err
	}
	if err := m.writeConf(req.Name, data); err != nil {
		return nil, err
	}
	n, err := parseNetwork(data, m.confPath(req.Name))
	if err != nil {
		os.Remove(m.confPath(req.Name))
		return nil, err
	}
	if n.DNS {
		m.mu.Lock()
		m.startDNS(n)
		m.mu.Unlock()
	}
	slog.Info("network created", "network", n.Name, "driver", n.Driver, "subnet", subnet, "gateway", gateway)
	return n, nil
}

var driverOptions = map[string][]string{
	network.DriverBridge:  {network.OptionBridge, network.OptionMTU},
	network.DriverMacvlan: {network.OptionParent, network.OptionMode, network.OptionMTU},
	network.DriverIPvlan:  {network.OptionParent, network.OptionMode, network.OptionMTU},
}

var driverModes = map[string][]string{
	network.DriverMacvlan: {"bridge", "private", "vepa", "passthru"},
	network.DriverIPvlan:  {"l2", "l3", "l3s"},
}

func validateOptions(driver string, opts map[string]string) error {
	known, ok := driverOptions[driver]
	if !ok {
		return fmt.Errorf("driver %q is not bridge, macvlan or ipvlan: %w", driver, errdefs.ErrInvalidArgument)
	}
	for k, v := range opts {
		if !slices.Contains(known, k) {
			return fmt.Errorf("option %q is not one of the %s driver's (%s): %w", k, driver, strings.Join(known, ", "), errdefs.ErrInvalidArgument)
		}
		switch k {
		case network.OptionMTU:
			if n, err := strconv.Atoi(v); err != nil || n < 68 || n > 65535 {
				return fmt.Errorf("option mtu=%q must be a number from 68 to 65535: %w", v, errdefs.ErrInvalidArgument)
			}
		case network.OptionBridge:
			if err := validateBridgeName(v); err != nil {
				return fmt.Errorf("option bridge: %w", err)
			}
		case network.OptionMode:
			if !slices.Contains(driverModes[driver], v) {
				return fmt.Errorf("option mode=%q is not one of %s: %w", v, strings.Join(driverModes[driver], ", "), errdefs.ErrInvalidArgument)
			}
		case network.OptionParent:
			if err := validateBridgeName(v); err != nil {
				return fmt.Errorf("option parent: %w", err)
			}
		}
	}
	if driver != network.DriverBridge {
		parent := opts[network.OptionParent]
		if parent == "" {
			return fmt.Errorf("the %s driver needs the parent option (-o parent=<host interface>): %w", driver, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(filepath.Join("/sys/class/net", parent)); err != nil {
			return fmt.Errorf("parent interface %q does not exist on the host: %w", parent, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// pickBridge names the bridge ("berth" and ten hex digits of the ID
// unless the user chose) and checks no network or host interface has it.
func (m *Manager) pickBridge(meta *berthMeta, nets []*network.Network) error {
	br := meta.Options[network.OptionBridge]
	if br == "" {
		br = "berth" + meta.ID[:10]
		meta.Options[network.OptionBridge] = br
	}
	for _, n := range nets {
		if n.Bridge == br {
			return fmt.Errorf("bridge %s is already used by network %s: %w", br, n.Name, errdefs.ErrAlreadyExists)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", br)); err == nil {
		return fmt.Errorf("interface %s already exists on the host: %w", br, errdefs.ErrAlreadyExists)
	}
	return nil
}

// defaultPools are the ranges subnets are chosen from when none is given:
// Docker's, so habits (and firewall rules) carry over.
func defaultPools() []netip.Prefix {
	var out []netip.Prefix
	for i := 18; i <= 31; i++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16))
	}
	for i := 0; i < 256; i += 16 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i), 0}), 20))
	}
	return out
}

// pickSubnet parses the requested subnet, or chooses a free pool, and
// checks it overlaps no network and no host route.
func pickSubnet(req string, nets []*network.Network, routes []hostRoute) (netip.Prefix, error) {
	if req == "" {
		for _, p := range defaultPools() {
			if conflict(p, nets, routes) == nil {
				return p, nil
			}
		}
		return netip.Prefix{}, fmt.Errorf("no free subnet left in the default pools; give one with --subnet: %w", errdefs.ErrResourceExhausted)
	}
	p, err := parseSubnet(req)
	if err != nil {
		return p, err
	}
	return p, conflict(p, nets, routes)
}

func conflict(p netip.Prefix, nets []*network.Network, routes []hostRoute) error {
	for _, n := range nets {
		for _, s := range n.Subnets {
			if p.Overlaps(s.Subnet) {
				return fmt.Errorf("subnet %s overlaps subnet %s of network %s: %w", p, s.Subnet, n.Name, errdefs.ErrFailedPrecondition)
			}
		}
	}
	for _, r := range routes {
		if p.Overlaps(r.dst) {
			return fmt.Errorf("subnet %s overlaps the host's route to %s on %s: %w", p, r.dst, r.dev, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

func pickGateway(subnet netip.Prefix, req string) (netip.Addr, error) {
	if req == "" {
		return subnet.Addr().Next(), nil
	}
	gw, err := netip.ParseAddr(req)
	if err != nil || gw.Zone() != "" {
		return gw, fmt.Errorf("gateway %q is not an IP address: %w", req, errdefs.ErrInvalidArgument)
	}
	if !subnet.Contains(gw) {
		return gw, fmt.Errorf("gateway %s is outside subnet %s: %w", gw, subnet, errdefs.ErrInvalidArgument)
	}
	if gw == subnet.Addr() || gw == lastAddr(subnet) {
		return gw, fmt.Errorf("gateway %s is the network or broadcast address of %s: %w", gw, subnet, errdefs.ErrInvalidArgument)
	}
	return gw, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// hostRoute is one IPv4 route of the host's main table.
type hostRoute struct {
	dst netip.Prefix
	dev string
}

// hostRoutes reads /proc/net/route, leaving out default routes: a new
// network must not shadow any destination the host already routes.
func hostRoutes() []hostRoute {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []hostRoute
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(fs[1], 16, 32)
		mask, err2 := strconv.ParseUint(fs[7], 16, 32)
		if err1 != nil || err2 != nil || mask == 0 {
			continue
		}
		// The file holds addresses in host (little-endian) byte order.
		var d [4]byte
		binary.LittleEndian.PutUint32(d[:], uint32(dst))
		var mk [4]byte
		binary.LittleEndian.PutUint32(mk[:], uint32(mask))
		bits := 0
		for _, b := range mk {
			for i := 7; i >= 0 && b&(1<<i) != 0; i-- {
				bits++
			}
		}
		out = append(out, hostRoute{dst: netip.PrefixFrom(netip.AddrFrom4(d), bits).Masked(), dev: fs[0]})
	}
	return out
}

// RemoveNetwork removes a network berth created and has no containers.
func (m *Manager) RemoveNetwork(ctx context.Context, ref string) error {
	n, err := m.Network(ctx, ref)
	if err != nil {
		return err
	}
	unlock := m.locks.lock("net:" + n.Name)
	defer unlock()
	return m.removeNetworkLocked(n)
}

func (m *Manager) removeNetworkLocked(n *network.Network) error {
	if !n.Managed() {
		return fmt.Errorf("network %s is defined by %s, not created by berth: remove that file to remove it: %w", n.Name, n.Source, errdefs.ErrFailedPrecondition)
	}
	if n.Default {
		return fmt.Errorf("network %s is the default network and cannot be removed: %w", n.Name, errdefs.ErrFailedPrecondition)
	}
	if users := m.users(n.Name); len(users) > 0 {
		return fmt.Errorf("network %s is in use by container(s) %s: %w", n.Name, strings.Join(users, ", "), errdefs.ErrFailedPrecondition)
	}
	m.mu.Lock()
	if s := m.servers[n.Name]; s != nil {
		s.Close()
		delete(m.servers, n.Name)
	}
	m.mu.Unlock()
	if n.Bridge != "" {
		m.cancelDrop(n.Name)
		if err := m.removeNetworkRules(n); err != nil {
			return err
		}
		if err := deleteLink(n.Bridge); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(filepath.Join(m.ipamDir(), n.Name)); err != nil {
		return fmt.Errorf("remove address leases of network %s: %w", n.Name, err)
	}
	if err := os.Remove(n.File); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove network %s: %w", n.Name, err)
	}
	slog.Info("network removed", "network", n.Name)
	return nil
}

// users lists the containers attached to a network, "namespace/id".
func (m *Manager) users(name string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, a := range m.atts {
		if a.Network == name {
			out = append(out, a.Namespace+"/"+a.ContainerID)
		}
	}
	sort.Strings(out)
	return out
}

// PruneNetworks removes the berth-created networks nothing is attached
// to, except the default one.
func (m *Manager) PruneNetworks(ctx context.Context) ([]string, error) {
	nets, err := m.Networks(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, n := range nets {
		if !n.Managed() || n.Default {
			continue
		}
		unlock := m.locks.lock("net:" + n.Name)
		if len(m.users(n.Name)) == 0 {
			if err := m.removeNetworkLocked(n); err != nil {
				unlock()
				return removed, err
			}
			removed = append(removed, n.Name)
		}
		unlock()
	}
	return removed, nil
}
