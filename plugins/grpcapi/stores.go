package grpcapi

import (
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/plugins"
	"github.com/berthd/berth/services/berthimages"
	containersservice "github.com/berthd/berth/services/containers"
	contentservice "github.com/berthd/berth/services/content"
	imagesservice "github.com/berthd/berth/services/images"
	leasesservice "github.com/berthd/berth/services/leases"
	snapshotsservice "github.com/berthd/berth/services/snapshots"
)

// The services over the metadata store: each serves the namespaced view.
func init() {
	storeService := func(id string, build func(ic *plugins.InitContext) (any, error)) {
		plugins.Register(&plugins.Registration{
			Type:     plugins.GRPCPlugin,
			ID:       id,
			Requires: []plugins.Type{plugins.MetadataPlugin, plugins.EventPlugin},
			InitFn:   build,
		})
	}
	storeService("content", func(ic *plugins.InitContext) (any, error) {
		db, err := getMetadata(ic)
		if err != nil {
			return nil, err
		}
		return contentservice.New(db.ContentStore()), nil
	})
	storeService("images", func(ic *plugins.InitContext) (any, error) {
		db, err := getMetadata(ic)
		if err != nil {
			return nil, err
		}
		ex, err := getExchange(ic)
		if err != nil {
			return nil, err
		}
		return imagesservice.New(db.Images(), ex), nil
	})
	storeService("leases", func(ic *plugins.InitContext) (any, error) {
		db, err := getMetadata(ic)
		if err != nil {
			return nil, err
		}
		return leasesservice.New(db.Leases()), nil
	})
	storeService("containers", func(ic *plugins.InitContext) (any, error) {
		db, err := getMetadata(ic)
		if err != nil {
			return nil, err
		}
		ex, err := getExchange(ic)
		if err != nil {
			return nil, err
		}
		return containersservice.New(db.Containers(), ex), nil
	})
	storeService("snapshots", func(ic *plugins.InitContext) (any, error) {
		db, err := getMetadata(ic)
		if err != nil {
			return nil, err
		}
		ex, err := getExchange(ic)
		if err != nil {
			return nil, err
		}
		return snapshotsservice.New(func(name string) (snapshots.Snapshotter, error) {
			if s := db.Snapshotter(name); s != nil {
				return s, nil
			}
			return nil, fmt.Errorf("snapshotter %q is not loaded: %w", name, errdefs.ErrNotFound)
		}, ex), nil
	})
}

func init() {
	plugins.Register(&plugins.Registration{
		Type:     plugins.BerthGRPCPlugin,
		ID:       "images",
		Requires: []plugins.Type{plugins.MetadataPlugin, plugins.EventPlugin, plugins.BerthInternalPlugin},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			db, err := getMetadata(ic)
			if err != nil {
				return nil, err
			}
			ex, err := getExchange(ic)
			if err != nil {
				return nil, err
			}
			// Without the unpacker (plugins/diff), images import without
			// unpacking and Unpack is refused.
			var unpacker berthimages.Unpacker
			if u, err := ic.GetByID(plugins.BerthInternalPlugin, "unpack"); err == nil {
				unpacker, _ = u.(berthimages.Unpacker)
			}
			return berthimages.New(berthimages.Options{
				Content:  db.ContentStore(),
				Images:   db.Images(),
				Leases:   db.Leases(),
				Events:   ex,
				Unpacker: unpacker,
			}), nil
		},
	})
}
