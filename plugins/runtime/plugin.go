// Package runtime registers the shim manager (io.containerd.runtime.v2
// "task") and the tasks gRPC service (io.containerd.grpc.v1 "tasks").
package runtime

import (
	"os"
	"path/filepath"

	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/plugins"
	"github.com/berthd/berth/plugins/defaults"
	runtimev2 "github.com/berthd/berth/runtime/v2"
	"github.com/berthd/berth/services/tasks"
)

// Config is [plugins."io.containerd.runtime.v2.task"].
type Config struct {
	// Runtimes aliases runtime names to shim binaries.
	Runtimes map[string]RuntimeConfig `toml:"runtimes" comment:"Shim binary per runtime name, e.g. [plugins.\"io.containerd.runtime.v2.task\".runtimes.\"io.containerd.runc.v2\"] binary = \"berth-shim-runc-v2\". Names not listed map to containerd-shim-<name>-<version> (berth-shim-... for io.berth.*), searched beside berthd, then in PATH."`
	// ShimDebug starts shims with -debug.
	ShimDebug bool `toml:"shim_debug" comment:"Start shims with -debug (their log goes to berthd's)."`
	// SpareShim keeps one berth shim started ahead of need.
	SpareShim bool `toml:"spare_shim" comment:"Keep one berth-shim-runc-v2 started ahead of need (about 4 MB), so creating a task of io.berth.runc.v2 skips the shim's start command (about 7 ms)."`
}

// spareRuntime is the runtime whose shim can be a spare: berth's own, when
// no alias points it elsewhere.
const spareRuntime = "io.berth.runc.v2"

// RuntimeConfig is one runtime's entry.
type RuntimeConfig struct {
	Binary string `toml:"binary" comment:"Shim binary: a name looked up beside berthd and in PATH, or an absolute path."`
}

// RuntimeRootDir is the OCI runtime's state root under berth's state
// folder; runc adds the namespace.
const RuntimeRootDir = "runc"

func init() {
	plugins.Register(&plugins.Registration{
		Type:     plugins.RuntimePluginV2,
		ID:       "task",
		Config:   &Config{SpareShim: true},
		Requires: []plugins.Type{plugins.EventPlugin, plugins.BerthInternalPlugin},
		InitFn:   initManager,
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.GRPCPlugin,
		ID:       "tasks",
		Requires: []plugins.Type{plugins.RuntimePluginV2, plugins.MetadataPlugin},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			m, err := ic.GetByID(plugins.RuntimePluginV2, "task")
			if err != nil {
				return nil, err
			}
			db, err := ic.GetSingle(plugins.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			return tasks.New(db.(*metadata.DB).Containers(), m.(*runtimev2.Manager)), nil
		},
	})
}

func initManager(ic *plugins.InitContext) (any, error) {
	cfg := ic.Config.(*Config)
	ex, err := ic.GetSingle(plugins.EventPlugin)
	if err != nil {
		return nil, err
	}
	defaultRuntime := "io.berth.runc.v2"
	if d, err := ic.GetByID(plugins.BerthInternalPlugin, defaults.ID); err == nil {
		if r := d.(*defaults.Defaults).Runtime; r != "" {
			defaultRuntime = r
		}
	}
	aliases := map[string]string{}
	for name, rc := range cfg.Runtimes {
		aliases[name] = rc.Binary
	}
	var search []string
	if self, err := os.Executable(); err == nil {
		search = append(search, filepath.Dir(self))
	}
	spare := ""
	if _, aliased := aliases[spareRuntime]; cfg.SpareShim && !aliased {
		spare = spareRuntime
	}
	return runtimev2.New(ic.Context, runtimev2.Options{
		State:          ic.State,
		RuntimeRoot:    filepath.Join(ic.Properties[plugins.PropertyStateDir], RuntimeRootDir),
		Address:        ic.Properties[plugins.PropertyGRPCAddress],
		TTRPCAddress:   ic.Properties[plugins.PropertyTTRPCAddress],
		Runtimes:       aliases,
		DefaultRuntime: defaultRuntime,
		SearchDirs:     search,
		Events:         ex.(*events.Exchange),
		ShimDebug:      cfg.ShimDebug,
		SpareRuntime:   spare,
	})
}
