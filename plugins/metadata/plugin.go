// Package metadata registers the bbolt metadata plugin: the namespaced view
// of content and snapshots, images, containers, leases and garbage
// collection.
package metadata

import (
	"context"
	"errors"
	"log/slog"

	"github.com/containerd/errdefs"

	"fmt"
	"path/filepath"
	"time"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/plugins"
)

// ID is the plugin id, containerd's name for the same plugin.
const ID = "bolt"

// Config is [plugins."io.containerd.metadata.v1.bolt"].
type Config struct {
	GCDelay          plugins.Duration `toml:"gc_delay" comment:"How long garbage collection waits after a deletion, so a burst of deletions is collected once."`
	GCPauseThreshold float64          `toml:"gc_pause_threshold" comment:"Largest share of time collections may hold metadata writers off (0 < x <= 0.5)."`
	IngestExpiry     plugins.Duration `toml:"ingest_expiry" comment:"How long an unfinished upload without a lease is kept after its last write."`
}

func init() {
	plugins.Register(&plugins.Registration{
		Type:     plugins.MetadataPlugin,
		ID:       ID,
		Requires: []plugins.Type{plugins.ContentPlugin, plugins.SnapshotPlugin},
		Config: &Config{
			GCDelay:          plugins.Duration(gc.DefaultDelay),
			GCPauseThreshold: gc.DefaultPauseThreshold,
			IngestExpiry:     plugins.Duration(metadata.DefaultIngestExpiry),
		},
		InitFn: initDB,
	})
}

func initDB(ic *plugins.InitContext) (any, error) {
	cfg := ic.Config.(*Config)
	if cfg.GCPauseThreshold <= 0 || cfg.GCPauseThreshold > 0.5 {
		return nil, fmt.Errorf("gc_pause_threshold %v must be above 0 and at most 0.5", cfg.GCPauseThreshold)
	}
	cs, err := ic.GetByID(plugins.ContentPlugin, "content")
	if err != nil {
		return nil, err
	}
	snaps := map[string]snapshots.Snapshotter{}
	for id, s := range ic.GetByType(plugins.SnapshotPlugin) {
		snaps[id] = s.(snapshots.Snapshotter)
	}
	path := filepath.Join(ic.Root, "meta.db")
	db, err := metadata.Open(path,
		metadata.WithGCConfig(gc.Config{Delay: time.Duration(cfg.GCDelay), PauseThreshold: cfg.GCPauseThreshold}),
		metadata.WithIngestExpiry(time.Duration(cfg.IngestExpiry)))
	if err != nil {
		if errors.Is(err, metadata.ErrInUse) {
			return nil, fmt.Errorf("root %s is in use by another berthd", ic.Properties[plugins.PropertyRootDir])
		}
		return nil, err
	}
	if err := db.Init(ic.Context, cs.(content.Store), snaps); err != nil {
		db.Close()
		return nil, err
	}
	if err := dropTemporaryLeases(ic.Context, db); err != nil {
		db.Close()
		return nil, err
	}
	ic.Meta.Exports["path"] = path
	return db, nil
}

// dropTemporaryLeases deletes the leases a previous berthd took for its own
// operations: those operations died with it, and what they left behind
// should be collected now rather than when the leases expire.
func dropTemporaryLeases(ctx context.Context, db *metadata.DB) error {
	nss, err := db.Namespaces().List(ctx)
	if err != nil {
		return err
	}
	lm := db.Leases()
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ls, err := lm.List(nctx, fmt.Sprintf("labels.%q", leases.LabelTemporary))
		if err != nil {
			return fmt.Errorf("list temporary leases of %s: %w", ns, err)
		}
		for _, l := range ls {
			if err := lm.Delete(nctx, l); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("delete temporary lease %s/%s: %w", ns, l.ID, err)
			}
			slog.Info("dropped lease of an operation interrupted by a restart", "namespace", ns, "lease", l.ID)
		}
	}
	return nil
}
