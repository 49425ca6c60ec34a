package berthcontainers

import (
	"log/slog"

	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/run"
	"github.com/berthd/berth/core/volumes"
	"github.com/berthd/berth/plugins"
	volumesplugin "github.com/berthd/berth/plugins/volumes"
)

// volumeStore returns the volume store, nil (containers with volumes are
// then refused) when the volumes plugin did not load.
func volumeStore(ic *plugins.InitContext) *volumes.Store {
	inst, err := ic.GetByID(plugins.BerthServicePlugin, volumesplugin.StoreID)
	if err != nil {
		slog.Warn("no volume store: containers with volumes cannot be created", "error", err)
		return nil
	}
	return inst.(*volumes.Store)
}

// wireVolumes lets the store ask the manager whether a volume's users
// run, so that a forced removal spares running containers, and drops the
// users that a crash left without a container.
func wireVolumes(ic *plugins.InitContext, db *metadata.DB, store *volumes.Store, m *run.Manager) {
	if store == nil {
		return
	}
	store.SetRunningFunc(m.ContainerRunning)
	nss, err := db.Namespaces().List(ic.Context)
	if err != nil {
		slog.Warn("list namespaces to reconcile volume users", "error", err)
		return
	}
	if err := m.ReconcileVolumes(ic.Context, nss); err != nil {
		slog.Warn("reconcile volume users", "error", err)
	}
}
