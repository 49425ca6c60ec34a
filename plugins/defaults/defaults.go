// Package defaults registers the plugin that decides what berthd uses when
// a client names no snapshotter or runtime: the configured ones, with
// overlayfs falling back to native where overlay cannot run.
package defaults

import (
	"fmt"
	"log/slog"

	"github.com/berthd/berth/plugins"
)

// ID is the plugin id; look it up with GetByID(BerthInternalPlugin, ID).
const ID = "defaults"

// Config is [plugins."io.berth.internal.v1.defaults"].
type Config struct {
	Snapshotter string `toml:"snapshotter" comment:"Snapshotter used when a client names none (overlayfs falls back to native where overlay cannot run)."`
	Runtime     string `toml:"runtime" comment:"Runtime (shim) used when a client names none."`
}

// Defaults is the plugin's instance: what is actually in use.
type Defaults struct {
	Snapshotter string
	Runtime     string
}

// Exported keys, read by the system service for `berth info`.
const (
	ExportSnapshotter = "default_snapshotter"
	ExportRuntime     = "default_runtime"
)

func init() {
	plugins.Register(&plugins.Registration{
		Type:     plugins.BerthInternalPlugin,
		ID:       ID,
		Config:   &Config{Snapshotter: "overlayfs", Runtime: "io.berth.runc.v2"},
		Requires: []plugins.Type{plugins.SnapshotPlugin},
		InitFn:   initDefaults,
	})
}

func initDefaults(ic *plugins.InitContext) (any, error) {
	cfg := ic.Config.(*Config)
	d := &Defaults{Snapshotter: cfg.Snapshotter, Runtime: cfg.Runtime}
	if _, err := ic.GetByID(plugins.SnapshotPlugin, cfg.Snapshotter); err != nil {
		if cfg.Snapshotter != "overlayfs" {
			return nil, fmt.Errorf("default snapshotter %q is not available: %w", cfg.Snapshotter, err)
		}
		if _, nerr := ic.GetByID(plugins.SnapshotPlugin, "native"); nerr != nil {
			return nil, fmt.Errorf("neither overlayfs (%v) nor native (%v) snapshotter is available", err, nerr)
		}
		slog.Warn("overlayfs is not available; native is the default snapshotter", "reason", err)
		d.Snapshotter = "native"
	}
	ic.Meta.Exports[ExportSnapshotter] = d.Snapshotter
	ic.Meta.Exports[ExportRuntime] = d.Runtime
	return d, nil
}
