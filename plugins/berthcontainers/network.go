package berthcontainers

import (
	"context"
	"log/slog"

	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/run"
	"github.com/berthd/berth/plugins"
	runtimev2 "github.com/berthd/berth/runtime/v2"
)

// networkManager returns the network plugin's manager, nil when it is
// not loaded (berthd not root): containers then get bare namespaces.
func networkManager(ic *plugins.InitContext) network.Manager {
	v, err := ic.GetSingle(plugins.NetworkPlugin)
	if err != nil {
		slog.Warn("no network plugin: containers get a network namespace with only lo, and cannot publish ports or join networks", "error", err)
		return nil
	}
	m, ok := v.(network.Manager)
	if !ok {
		slog.Warn("the network plugin is not a network manager; containers get no networks", "type", plugins.NetworkPlugin)
		return nil
	}
	return m
}

// releaseDeadNetworks releases the network of containers whose shim died
// (found dead at berthd's start too, which the runtime reports at once).
// Tasks deleted by berth release their network in the container manager.
func releaseDeadNetworks(rt *runtimev2.Manager, m *run.Manager) {
	rt.OnDelete(func(_ context.Context, ev runtimev2.TaskDeleted) {
		if ev.ShimDied {
			m.TaskGone(ev.Namespace, ev.ID)
		}
	})
}
