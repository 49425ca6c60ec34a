// Package snapshotters registers the built-in snapshotters: overlayfs (the
// default) and native (copy-based, any filesystem). Both carry containerd's
// ids, as the containerd 2.x client looks for
// io.containerd.snapshotter.v1/overlayfs before it unpacks.
package snapshotters

import (
	"errors"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/plugins"
	"github.com/berthd/berth/snapshotters/native"
	"github.com/berthd/berth/snapshotters/overlay"
)

// OverlayConfig is [plugins."io.containerd.snapshotter.v1.overlayfs"].
type OverlayConfig struct {
	MountOptions []string `toml:"mount_options" comment:"Extra overlay mount options (lowerdir, upperdir and workdir are berth's)."`
	SyncRemove   bool     `toml:"sync_remove" comment:"Delete a removed snapshot's data before Remove returns instead of in the background."`
}

// NativeConfig is [plugins."io.containerd.snapshotter.v1.native"].
type NativeConfig struct {
	SyncRemove bool `toml:"sync_remove" comment:"Delete a removed snapshot's data before Remove returns instead of in the background."`
}

func init() {
	plugins.Register(&plugins.Registration{
		Type:   plugins.SnapshotPlugin,
		ID:     "overlayfs",
		Config: &OverlayConfig{},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			cfg := ic.Config.(*OverlayConfig)
			opts := []overlay.Opt{overlay.WithMountOptions(cfg.MountOptions...)}
			if cfg.SyncRemove {
				opts = append(opts, overlay.WithSyncRemove())
			}
			ic.Meta.Platforms = []ocispec.Platform{platforms.DefaultSpec()}
			ic.Meta.Exports["root"] = ic.Root
			s, err := overlay.New(ic.Root, opts...)
			if errors.Is(err, overlay.ErrUnsupported) {
				return nil, plugins.Skip("%v", err)
			}
			return s, err
		},
	})
	plugins.Register(&plugins.Registration{
		Type:   plugins.SnapshotPlugin,
		ID:     "native",
		Config: &NativeConfig{},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			var opts []native.Opt
			if ic.Config.(*NativeConfig).SyncRemove {
				opts = append(opts, native.WithSyncRemove())
			}
			ic.Meta.Platforms = []ocispec.Platform{platforms.DefaultSpec()}
			ic.Meta.Exports["root"] = ic.Root
			return native.New(ic.Root, opts...)
		},
	})
}
