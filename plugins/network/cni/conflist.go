package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"

	"github.com/berthd/berth/core/network"
)

// cniVersion is the spec version of the lists berth writes: the newest the
// Debian plugins (1.1) speak.
const cniVersion = "1.0.0"

// maxConfSize bounds a configuration file read into memory.
const maxConfSize = 1 << 20

// berthMeta is the "berth" object berth adds to the lists it writes; CNI
// ignores unknown top-level keys.
type berthMeta struct {
	ID       string `json:"id"`
	Driver   string `json:"driver"`
	Internal bool   `json:"internal,omitempty"`
	// Masquerade says berth masquerades the network's outbound traffic
	// itself (one nat rule per network, see masqRules) and the bridge
	// plugin's ipMasq is off. Lists written before berth did so lack it
	// and keep the plugin's.
	Masquerade bool              `json:"masquerade,omitempty"`
	DNS        bool              `json:"dns,omitempty"`
	Default    bool              `json:"default,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Options    map[string]string `json:"options,omitempty"`
	Created    time.Time         `json:"created"`
}

var nameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// validateName checks a network name: CNI's rule, and short enough to be
// a folder name in host-local's data dir.
func validateName(name string) error {
	if len(name) > 64 || !nameRe.MatchString(name) {
		return fmt.Errorf("network name %q must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

var ifNameRe = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)

func validateBridgeName(name string) error {
	if !ifNameRe.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("interface name %q must be 1 to 15 letters, digits, '_', '.' or '-': %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("subnet %q is not a CIDR such as 10.1.0.0/24: %w", s, errdefs.ErrInvalidArgument)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("subnet %s: only IPv4 subnets are supported: %w", s, errdefs.ErrInvalidArgument)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("subnet %s has host bits set; did you mean %s?: %w", s, p.Masked(), errdefs.ErrInvalidArgument)
	}
	switch a := p.Addr(); {
	case a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast(), a.IsUnspecified(), p.Overlaps(netip.MustParsePrefix("127.0.0.0/8")), p.Overlaps(netip.MustParsePrefix("224.0.0.0/3")):
		return netip.Prefix{}, fmt.Errorf("subnet %s is loopback, link-local, multicast or reserved space: %w", s, errdefs.ErrInvalidArgument)
	}
	if p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("subnet %s is too small: use /30 or larger: %w", s, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// parsedFile is one configuration file as last read.
type parsedFile struct {
	mod  time.Time
	size int64
	net  *network.Network
	err  error
}

// confDir reads the configuration folder, re-parsing only files that
// changed since the last read.
type confDir struct {
	dir   string
	mu    sync.Mutex
	cache map[string]parsedFile
}

func newConfDir(dir string) *confDir {
	return &confDir{dir: dir, cache: map[string]parsedFile{}}
}

// networks returns every network of the folder, by file name order (the
// order CNI tools use); of two files defining one name, the first wins.
func (c *confDir) networks() ([]*network.Network, error) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read network configuration folder %s: %w", c.dir, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]string{}
	fresh := map[string]parsedFile{}
	var out []*network.Network
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conflist", ".conf", ".json":
		default:
			continue
		}
		path := filepath.Join(c.dir, e.Name())
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		pf, ok := c.cache[path]
		if !ok || !pf.mod.Equal(info.ModTime()) || pf.size != info.Size() {
			pf = parsedFile{mod: info.ModTime(), size: info.Size()}
			pf.net, pf.err = readNetworkFile(path)
			if pf.err != nil {
				slog.Warn("skipping invalid CNI configuration", "file", path, "error", pf.err)
			}
		}
		fresh[path] = pf
		if pf.err != nil {
			continue
		}
		if first, dup := seen[pf.net.Name]; dup {
			slog.Warn("network defined twice; the first file wins", "network", pf.net.Name, "used", first, "ignored", path)
			continue
		}
		seen[pf.net.Name] = path
		out = append(out, pf.net)
	}
	c.cache = fresh
	return out, nil
}

func readNetworkFile(path string) (*network.Network, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfSize {
		return nil, fmt.Errorf("larger than %d bytes", maxConfSize)
	}
	return parseNetwork(data, path)
}

// parseNetwork turns a configuration list (or a single-plugin .conf) into
// a Network. source is the file it came from; a list carrying berth's
// metadata is berth's own whatever its file.
func parseNetwork(data []byte, source string) (*network.Network, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, isList := raw["plugins"]; !isList {
		// A single-plugin .conf: wrap it in a list of one, as CNI tools
		// do.
		single, err := libcni.NetworkPluginConfFromBytes(data)
		if err != nil {
			return nil, err
		}
		if data, err = json.Marshal(map[string]any{
			"name":       single.Network.Name,
			"cniVersion": single.Network.CNIVersion,
			"plugins":    []json.RawMessage{data},
		}); err != nil {
			return nil, err
		}
	}
	list, err := libcni.NetworkConfFromBytes(data)
	if err != nil {
		return nil, err
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("network %q has no plugins", list.Name)
	}
	if err := validateName(list.Name); err != nil {
		return nil, err
	}
	n := &network.Network{
		Name:       list.Name,
		Source:     source,
		File:       source,
		CNIVersion: list.CNIVersion,
		Config:     data,
	}
	for _, p := range list.Plugins {
		n.Plugins = append(n.Plugins, p.Network.Type)
		if p.Network.Capabilities["portMappings"] {
			n.Ports = true
		}
		describePlugin(n, p.Bytes)
	}
	n.Driver = n.Plugins[0]
	if m, ok := raw["berth"]; ok {
		var meta berthMeta
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, fmt.Errorf("berth metadata: %w", err)
		}
		n.Source = network.SourceBerth
		n.ID, n.Driver, n.Internal, n.DNS, n.Default = meta.ID, meta.Driver, meta.Internal, meta.DNS, meta.Default
		n.Labels, n.Options, n.CreatedAt = meta.Labels, meta.Options, meta.Created
	}
	if n.ID == "" {
		sum := sha256.Sum256([]byte(source + "\x00" + n.Name))
		n.ID = hex.EncodeToString(sum[:])
	}
	return n, nil
}

// pluginConf is what berth reads of each plugin: the bridge name and the
// host-local ranges, in either of host-local's two styles.
type pluginConf struct {
	Type   string `json:"type"`
	Bridge string `json:"bridge"`
	IPAM   struct {
		Type    string      `json:"type"`
		Subnet  string      `json:"subnet"`
		Gateway string      `json:"gateway"`
		Ranges  [][]ipRange `json:"ranges"`
	} `json:"ipam"`
}

type ipRange struct {
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
}

func describePlugin(n *network.Network, conf []byte) {
	var pc pluginConf
	if json.Unmarshal(conf, &pc) != nil {
		return
	}
	if pc.Type == "bridge" && n.Bridge == "" {
		n.Bridge = pc.Bridge
		if n.Bridge == "" {
			n.Bridge = "cni0" // the bridge plugin's default
		}
	}
	ranges := slices.Concat(pc.IPAM.Ranges...)
	if pc.IPAM.Subnet != "" {
		ranges = append(ranges, ipRange{pc.IPAM.Subnet, pc.IPAM.Gateway})
	}
	for _, r := range ranges {
		p, err := netip.ParsePrefix(r.Subnet)
		if err != nil {
			continue
		}
		s := network.Subnet{Subnet: p.Masked()}
		if gw, err := netip.ParseAddr(r.Gateway); err == nil {
			s.Gateway = gw
		} else if pc.Type == "bridge" {
			// host-local's default gateway, which the bridge plugin
			// assigns to the bridge.
			s.Gateway = p.Masked().Addr().Next()
		}
		n.Subnets = append(n.Subnets, s)
	}
}

// managedList builds the configuration list of a network berth creates.
func managedList(name string, meta berthMeta, subnet netip.Prefix, gateway netip.Addr, ipamDir string) ([]byte, error) {
	ipam := map[string]any{
		"type":    "host-local",
		"ranges":  [][]map[string]string{{{"subnet": subnet.String(), "gateway": gateway.String()}}},
		"dataDir": ipamDir,
	}
	var plugins []any
	switch meta.Driver {
	case network.DriverBridge:
		// berth masquerades IPv4 networks itself; the bridge plugin's
		// ipMasq would add a chain and some fifteen iptables runs to
		// every container's start and stop.
		meta.Masquerade = !meta.Internal && subnet.Addr().Is4()
		br := map[string]any{
			"type":      "bridge",
			"bridge":    meta.Options[network.OptionBridge],
			"isGateway": true,
			// Internal networks keep the gateway address on the bridge
			// (the embedded DNS answers there) but get no default route
			// and no masquerading.
			"isDefaultGateway": !meta.Internal,
			"ipMasq":           !meta.Internal && !meta.Masquerade,
			// Hairpin lets a container reach its own published port
			// through the host.
			"hairpinMode":  true,
			"capabilities": map[string]bool{"ips": true, "mac": true},
			"ipam":         ipam,
		}
		addMTU(br, meta.Options)
		plugins = append(plugins, br)
		if !meta.Internal {
			plugins = append(plugins, map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
				"snat":         true,
			})
		}
	case network.DriverMacvlan, network.DriverIPvlan:
		if !meta.Internal {
			ipam["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}}
		}
		p := map[string]any{
			"type":         meta.Driver,
			"master":       meta.Options[network.OptionParent],
			"capabilities": map[string]bool{"ips": true},
			"ipam":         ipam,
		}
		if mode := meta.Options[network.OptionMode]; mode != "" {
			p["mode"] = mode
		}
		addMTU(p, meta.Options)
		plugins = append(plugins, p)
	default:
		return nil, fmt.Errorf("driver %q: %w", meta.Driver, errdefs.ErrInvalidArgument)
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": cniVersion,
		"name":       name,
		"berth":      meta,
		"plugins":    plugins,
	}, "", "  ")
}

// masquerades reports whether berth masquerades n itself: the "berth"
// object of its list says so.
func masquerades(n *network.Network) bool {
	if !n.Managed() {
		return false
	}
	var list struct {
		Berth struct {
			Masquerade bool `json:"masquerade"`
		} `json:"berth"`
	}
	return json.Unmarshal(n.Config, &list) == nil && list.Berth.Masquerade
}

func addMTU(p map[string]any, opts map[string]string) {
	if v := opts[network.OptionMTU]; v != "" {
		var mtu int
		fmt.Sscan(v, &mtu)
		p["mtu"] = mtu
	}
}

// findNetwork picks a network by name, full ID or unique ID prefix.
func findNetwork(nets []*network.Network, ref string) (*network.Network, error) {
	if ref == "" {
		return nil, fmt.Errorf("network name is empty: %w", errdefs.ErrInvalidArgument)
	}
	for _, n := range nets {
		if n.Name == ref || n.ID == ref {
			return n, nil
		}
	}
	var matches []*network.Network
	for _, n := range nets {
		if strings.HasPrefix(n.ID, ref) {
			matches = append(matches, n)
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("network %q: %w", ref, errdefs.ErrNotFound)
	case 1:
		return matches[0], nil
	}
	names := make([]string, 0, len(matches))
	for _, n := range matches {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("network ID prefix %q matches %s: %w", ref, strings.Join(names, ", "), errdefs.ErrInvalidArgument)
}
