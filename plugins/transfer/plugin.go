// Package transfer registers server-side pull and push: the transfer
// engine (io.containerd.transfer.v1 "local", containerd's name for its
// own), the stream manager (io.containerd.streaming.v1 "manager") and the
// gRPC services containerd.services.transfer.v1 ("transfer") and
// containerd.services.streaming.v1 ("streaming") that containerd 2 clients
// and the berth CLI call.
package transfer

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/core/transfer"
	"github.com/berthd/berth/core/unpack"
	"github.com/berthd/berth/internal/version"
	"github.com/berthd/berth/plugins"
	"github.com/berthd/berth/plugins/defaults"
	transferservice "github.com/berthd/berth/services/transfer"
	"github.com/berthd/berth/services/transfer/streaming"
)

// StreamingPlugin is containerd's plugin type of the stream manager.
const StreamingPlugin plugins.Type = "io.containerd.streaming.v1"

// Plugin ids, containerd's.
const (
	EngineID  = "local"
	ManagerID = "manager"
)

// labelDefaultSnapshotter on a namespace chooses its default snapshotter,
// as containerd clients honour it.
const labelDefaultSnapshotter = "containerd.io/defaults/snapshotter"

// Config is [plugins."io.containerd.transfer.v1.local"].
type Config struct {
	MaxConcurrentDownloads int    `toml:"max_concurrent_downloads" comment:"Blob downloads running at once over all pulls (uploads are bounded the same, separately)."`
	ConfigPath             string `toml:"config_path" comment:"Root of the registry hosts configuration: <config_path>/<registry host>/hosts.toml (mirrors, TLS, plain HTTP), containerd's layout."`
	Unpack                 bool   `toml:"unpack" comment:"Unpack pulled images into the default snapshotter when a pull names no unpack (the berth CLI always names one)."`
}

// Engine is the engine plugin's instance.
type Engine struct {
	*transfer.Engine
	// Unpack is the configured default.
	Unpack bool
}

func init() {
	plugins.Register(&plugins.Registration{
		Type:   StreamingPlugin,
		ID:     ManagerID,
		InitFn: func(*plugins.InitContext) (any, error) { return streaming.NewManager(), nil },
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.TransferPlugin,
		ID:       EngineID,
		Requires: []plugins.Type{plugins.MetadataPlugin, plugins.SnapshotPlugin, plugins.BerthInternalPlugin},
		Config: &Config{
			MaxConcurrentDownloads: 3,
			ConfigPath:             transfer.DefaultHostDir,
			Unpack:                 true,
		},
		InitFn: initEngine,
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.GRPCPlugin,
		ID:       "streaming",
		Requires: []plugins.Type{StreamingPlugin},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			m, err := manager(ic)
			if err != nil {
				return nil, err
			}
			return streaming.New(m), nil
		},
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.GRPCPlugin,
		ID:       "transfer",
		Requires: []plugins.Type{plugins.TransferPlugin, StreamingPlugin, plugins.EventPlugin},
		InitFn:   initService,
	})
}

func manager(ic *plugins.InitContext) (*streaming.Manager, error) {
	v, err := ic.GetByID(StreamingPlugin, ManagerID)
	if err != nil {
		return nil, err
	}
	return v.(*streaming.Manager), nil
}

func initEngine(ic *plugins.InitContext) (any, error) {
	cfg := ic.Config.(*Config)
	if cfg.MaxConcurrentDownloads < 1 {
		return nil, fmt.Errorf("max_concurrent_downloads %d: must be at least 1: %w", cfg.MaxConcurrentDownloads, errdefs.ErrInvalidArgument)
	}
	v, err := ic.GetSingle(plugins.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	db := v.(*metadata.DB)
	cs := db.ContentStore()
	if cs == nil {
		return nil, fmt.Errorf("metadata has no content store: %w", errdefs.ErrFailedPrecondition)
	}
	// The pull's own unpacker, over a differ whose reads and applies
	// report extraction progress to the pull they serve. Chain IDs are
	// locked process-wide by core/unpack, so it shares them with every
	// other unpacker in berthd.
	applier := transfer.TrackApplies(diff.New(transfer.TrackReads(cs)))
	e := transfer.New(transfer.Config{
		Content:                cs,
		Images:                 db.Images(),
		Leases:                 db.Leases(),
		Unpacker:               unpack.New(cs, applier, unpack.WithLeases(db.Leases())),
		Snapshotter:            snapshotterFunc(ic, db),
		MaxConcurrentDownloads: cfg.MaxConcurrentDownloads,
		HostDir:                cfg.ConfigPath,
		UserAgent:              "berth/" + version.Version,
		ScratchDir:             filepath.Join(ic.Root, "inflate"),
	})
	ic.Meta.Exports["config_path"] = cfg.ConfigPath
	return &Engine{Engine: e, Unpack: cfg.Unpack}, nil
}

// snapshotterFunc resolves "" to the namespace's default snapshotter
// (its containerd.io/defaults/snapshotter label), else berthd's.
func snapshotterFunc(ic *plugins.InitContext, db *metadata.DB) transfer.SnapshotterFunc {
	return func(ctx context.Context, name string) (string, snapshots.Snapshotter, error) {
		if name == "" {
			name = defaultSnapshotter(ctx, ic, db)
		}
		sn := db.Snapshotter(name)
		if sn == nil {
			return name, nil, fmt.Errorf("snapshotter %q is not loaded: %w", name, errdefs.ErrNotFound)
		}
		return name, sn, nil
	}
}

func defaultSnapshotter(ctx context.Context, ic *plugins.InitContext, db *metadata.DB) string {
	if ns, ok := namespaces.Namespace(ctx); ok {
		if lbls, err := db.Namespaces().Labels(ctx, ns); err == nil && lbls[labelDefaultSnapshotter] != "" {
			return lbls[labelDefaultSnapshotter]
		}
	}
	// The defaults plugin may initialise after this one; look it up per
	// call.
	if p := ic.Plugins().Get(plugins.BerthInternalPlugin, defaults.ID); p != nil {
		if d, err := p.Instance(); err == nil {
			return d.(*defaults.Defaults).Snapshotter
		}
	}
	return "overlayfs"
}

func initService(ic *plugins.InitContext) (any, error) {
	v, err := ic.GetByID(plugins.TransferPlugin, EngineID)
	if err != nil {
		return nil, err
	}
	e := v.(*Engine)
	m, err := manager(ic)
	if err != nil {
		return nil, err
	}
	ex, err := ic.GetSingle(plugins.EventPlugin)
	if err != nil {
		return nil, err
	}
	return transferservice.New(transferservice.Options{
		Engine:  e.Engine,
		Streams: m,
		Events:  ex.(events.Publisher),
		Unpack:  e.Unpack,
	}), nil
}
