// Package network registers berth's network plugin (type
// io.berth.network.v1, id cni: a core/network.Manager over CNI) and the
// Networks gRPC service on it. The runtime and CRI find the manager with
// ic.GetSingle(plugins.NetworkPlugin) and assert network.Manager.
package network

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/plugins"
	"github.com/berthd/berth/plugins/network/cni"
	"github.com/berthd/berth/services/networks"
)

// ID is the network plugin's id.
const ID = "cni"

func init() {
	plugins.Register(&plugins.Registration{
		Type:   plugins.NetworkPlugin,
		ID:     ID,
		Config: cni.DefaultConfig(),
		InitFn: initManager,
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.BerthGRPCPlugin,
		ID:       "networks",
		Requires: []plugins.Type{plugins.NetworkPlugin},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			v, err := ic.GetSingle(plugins.NetworkPlugin)
			if err != nil {
				return nil, err
			}
			m, ok := v.(network.Manager)
			if !ok {
				return nil, fmt.Errorf("plugin of type %s is a %T, not a network manager", plugins.NetworkPlugin, v)
			}
			return networks.New(m), nil
		},
	})
}

func initManager(ic *plugins.InitContext) (any, error) {
	if os.Geteuid() != 0 {
		return nil, plugins.Skip("network namespaces, bridges and firewall rules need root")
	}
	cfg := ic.Config.(*cni.Config)
	warnMissing(cfg)
	ic.Meta.Exports["conf_dir"] = cfg.ConfDir
	ic.Meta.Exports["state"] = ic.State
	return cni.New(ic.Context, *cfg, ic.State)
}

// warnMissing logs what networks will need and the host lacks: berth
// still lists networks without them, attachments fail with the plugin's
// own error.
func warnMissing(cfg *cni.Config) {
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		found := false
		for _, d := range cfg.BinDirs {
			if _, err := os.Stat(filepath.Join(d, p)); err == nil {
				found = true
				break
			}
		}
		if !found {
			slog.Warn("CNI plugin not found; install containernetworking-plugins", "plugin", p, "bin_dirs", cfg.BinDirs)
		}
	}
	// Containers reaching a published port of a container on their own
	// bridge need bridged replies to pass conntrack (br_netfilter).
	if b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil || strings.TrimSpace(string(b)) != "1" {
		slog.Warn("bridge traffic does not pass iptables (load br_netfilter and set net.bridge.bridge-nf-call-iptables=1): containers cannot reach published ports of containers on their own network through the host's address")
	}
	for _, b := range []string{"iptables", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			slog.Warn("program networks need is missing", "program", b)
		}
	}
}
