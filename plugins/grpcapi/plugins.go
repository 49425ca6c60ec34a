// Package grpcapi registers the gRPC services of the containerd API that
// berthd serves, each as an io.containerd.grpc.v1 plugin named like
// containerd's.
package grpcapi

import (
	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/plugins"
	eventsservice "github.com/berthd/berth/services/events"
	"github.com/berthd/berth/services/introspection"
	"github.com/berthd/berth/services/namespaces"
	"github.com/berthd/berth/services/system"
	"github.com/berthd/berth/services/version"
)

func init() {
	plugins.Register(&plugins.Registration{
		Type: plugins.GRPCPlugin,
		ID:   "version",
		InitFn: func(*plugins.InitContext) (any, error) {
			return &version.Service{}, nil
		},
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.GRPCPlugin,
		ID:       "introspection",
		Requires: []plugins.Type{plugins.All},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			return introspection.New(ic.Plugins(), ic.Root)
		},
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.GRPCPlugin,
		ID:       "namespaces",
		Requires: []plugins.Type{plugins.MetadataPlugin, plugins.EventPlugin},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			db, err := getMetadata(ic)
			if err != nil {
				return nil, err
			}
			ex, err := getExchange(ic)
			if err != nil {
				return nil, err
			}
			return namespaces.New(db, ex), nil
		},
	})
}

func getMetadata(ic *plugins.InitContext) (*metadata.DB, error) {
	v, err := ic.GetSingle(plugins.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	return v.(*metadata.DB), nil
}

func getExchange(ic *plugins.InitContext) (*events.Exchange, error) {
	v, err := ic.GetSingle(plugins.EventPlugin)
	if err != nil {
		return nil, err
	}
	return v.(*events.Exchange), nil
}

func init() {
	plugins.Register(&plugins.Registration{
		Type:     plugins.BerthGRPCPlugin,
		ID:       "system",
		Requires: []plugins.Type{plugins.All},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			set := ic.Plugins()
			return system.New(set, system.Options{
				Root:  ic.Properties[plugins.PropertyRootDir],
				State: ic.Properties[plugins.PropertyStateDir],
				// Introspection may initialise after this plugin, so
				// its UUID is looked up per call.
				UUID: func() string {
					if p := set.Get(plugins.GRPCPlugin, "introspection"); p != nil {
						if inst, err := p.Instance(); err == nil {
							return inst.(*introspection.Service).UUID()
						}
					}
					return ""
				},
			}), nil
		},
	})
}

func init() {
	plugins.Register(&plugins.Registration{
		Type:     plugins.GRPCPlugin,
		ID:       "events",
		Requires: []plugins.Type{plugins.EventPlugin},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			ex, err := getExchange(ic)
			if err != nil {
				return nil, err
			}
			return eventsservice.New(ex), nil
		},
	})
}
