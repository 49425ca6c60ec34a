// Package volumes registers berth's volume plugins: the plugin type
// io.berth.volume.v1 with the built-in "local" driver, the volume store
// (io.berth.service.v1.volumes) that the runtime uses to acquire, mount and
// release volumes, and the gRPC service (io.berth.grpc.v1.volumes).
package volumes

import (
	"fmt"

	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/volumes"
	"github.com/berthd/berth/core/volumes/local"
	"github.com/berthd/berth/plugins"
	volumesservice "github.com/berthd/berth/services/volumes"
)

// StoreID is the id of the store plugin: the runtime gets the
// *volumes.Store with GetByID(plugins.BerthServicePlugin, StoreID).
const StoreID = "volumes"

func init() {
	plugins.Register(&plugins.Registration{
		Type: plugins.VolumePlugin,
		ID:   volumes.DefaultDriver,
		InitFn: func(ic *plugins.InitContext) (any, error) {
			ic.Meta.Exports["root"] = ic.Root
			return local.New(ic.Root)
		},
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.BerthServicePlugin,
		ID:       StoreID,
		Requires: []plugins.Type{plugins.MetadataPlugin, plugins.VolumePlugin},
		InitFn:   initStore,
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.BerthGRPCPlugin,
		ID:       "volumes",
		Requires: []plugins.Type{plugins.BerthServicePlugin},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			inst, err := ic.GetByID(plugins.BerthServicePlugin, StoreID)
			if err != nil {
				return nil, err
			}
			return volumesservice.New(inst.(*volumes.Store)), nil
		},
	})
}

// initStore builds the store over the metadata database and every volume
// driver that initialised.
func initStore(ic *plugins.InitContext) (any, error) {
	inst, err := ic.GetSingle(plugins.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	drivers := map[string]volumes.Driver{}
	for id, d := range ic.GetByType(plugins.VolumePlugin) {
		drv, ok := d.(volumes.Driver)
		if !ok {
			return nil, fmt.Errorf("volume plugin %s does not implement a volume driver", id)
		}
		drivers[id] = drv
	}
	if len(drivers) == 0 {
		return nil, fmt.Errorf("no volume driver is available")
	}
	return volumes.NewStore(inst.(*metadata.DB), drivers), nil
}
