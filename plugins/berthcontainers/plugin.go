// Package berthcontainers registers berth's Docker-style container
// manager (io.berth.service.v1 "containers": core/run over the metadata
// store, the unpacker, the differ and the shim manager) and its gRPC
// service (io.berth.grpc.v1 "containers").
package berthcontainers

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"

	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/core/run"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/plugins"
	"github.com/berthd/berth/plugins/defaults"
	diffplugin "github.com/berthd/berth/plugins/diff"
	runtimev2 "github.com/berthd/berth/runtime/v2"
	"github.com/berthd/berth/services/berthcontainers"
)

// ID is both plugins' id.
const ID = "containers"

// Config is [plugins."io.berth.service.v1.containers"].
type Config struct {
	LogMaxSize  string           `toml:"log_max_size" comment:"Size at which a container's log file rotates (k, m, g suffixes; \"0\" never rotates)."`
	LogMaxFile  int              `toml:"log_max_file" comment:"Log files kept per container, the live one included."`
	InitPath    string           `toml:"init_path" comment:"Init binary run by --init (statically linked: it runs inside containers). Empty: berth-init beside berthd, else the first of berth-init, tini-static, docker-init, catatonit in PATH."`
	StopTimeout plugins.Duration `toml:"stop_timeout" comment:"Default time between a container's stop signal and SIGKILL."`
}

func init() {
	plugins.Register(&plugins.Registration{
		Type:     plugins.BerthServicePlugin,
		ID:       ID,
		Config:   &Config{LogMaxSize: "10m", LogMaxFile: 3, StopTimeout: plugins.Duration(10 * time.Second)},
		Requires: []plugins.Type{plugins.MetadataPlugin, plugins.DiffPlugin, plugins.BerthInternalPlugin, plugins.RuntimePluginV2, plugins.EventPlugin, plugins.NetworkPlugin, plugins.BerthServicePlugin},
		InitFn:   initManager,
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.BerthGRPCPlugin,
		ID:       ID,
		Requires: []plugins.Type{plugins.BerthServicePlugin},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			m, err := ic.GetByID(plugins.BerthServicePlugin, ID)
			if err != nil {
				return nil, err
			}
			return berthcontainers.New(m.(*Manager).Manager), nil
		},
	})
}

// Manager is the service plugin's instance.
type Manager struct {
	*run.Manager
	stopEvents context.CancelFunc
}

// Close stops the event watch, then the manager.
func (m *Manager) Close() error {
	m.stopEvents()
	return m.Manager.Close()
}

// watchOOM tells the manager about /tasks/oom events, so the exit that
// follows is reported with OOMKilled. A subscription the exchange drops
// (too far behind) is renewed.
func watchOOM(ctx context.Context, ex *events.Exchange, m *run.Manager) {
	for ctx.Err() == nil {
		ch, errs := ex.Subscribe(ctx, `topic=="/tasks/oom"`)
		for loop := true; loop; {
			select {
			case env, ok := <-ch:
				if !ok {
					loop = false
					break
				}
				var ev apievents.TaskOOM
				if err := proto.Unmarshal(env.Event.GetValue(), &ev); err == nil {
					m.NoteOOM(env.Namespace, ev.ContainerID)
				}
			case err := <-errs:
				if ctx.Err() == nil {
					slog.Warn("OOM event subscription ended; renewing it", "error", err)
				}
				loop = false
			}
		}
	}
}

func initManager(ic *plugins.InitContext) (any, error) {
	cfg := ic.Config.(*Config)
	maxSize, err := oci.ParseSize(cfg.LogMaxSize)
	if err != nil {
		return nil, fmt.Errorf("log_max_size: %w", err)
	}
	if cfg.LogMaxFile < 1 {
		return nil, fmt.Errorf("log_max_file must be at least 1: %w", errdefs.ErrInvalidArgument)
	}
	v, err := ic.GetSingle(plugins.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	db := v.(*metadata.DB)
	u, err := ic.GetByID(plugins.BerthInternalPlugin, diffplugin.UnpackID)
	if err != nil {
		return nil, fmt.Errorf("the container manager needs the unpacker: %w", err)
	}
	d, err := ic.GetByID(plugins.DiffPlugin, diffplugin.DifferID)
	if err != nil {
		return nil, err
	}
	comparer, ok := d.(diff.Comparer)
	if !ok {
		return nil, fmt.Errorf("differ %q cannot compare: %w", diffplugin.DifferID, errdefs.ErrInvalidArgument)
	}
	defaultRuntime := "io.berth.runc.v2"
	if p, err := ic.GetByID(plugins.BerthInternalPlugin, defaults.ID); err == nil {
		if r := p.(*defaults.Defaults).Runtime; r != "" {
			defaultRuntime = r
		}
	}
	for _, dir := range []string{ic.Root, ic.State} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, err
		}
	}
	store := volumeStore(ic)
	m := run.New(run.ManagerOptions{
		Containers: db.Containers(),
		Images:     db.Images(),
		Content:    db.ContentStore(),
		Snapshotters: func(name string) snapshots.Snapshotter {
			if s := db.Snapshotter(name); s != nil {
				return s
			}
			return nil
		},
		Unpacker:       u.(*diffplugin.ImageUnpacker),
		Comparer:       comparer,
		Leases:         db.Leases(),
		Root:           ic.Root,
		State:          ic.State,
		DefaultRuntime: defaultRuntime,
		LogMaxSize:     maxSize,
		LogMaxFile:     cfg.LogMaxFile,
		InitBinary:     findInit(cfg.InitPath),
		StopTimeout:    time.Duration(cfg.StopTimeout),
		Network:        networkManager(ic),
		Volumes:        store,
		Namespaces:     db.Namespaces().List,
	})
	wireVolumes(ic, db, store, m)
	if rt, err := ic.GetByID(plugins.RuntimePluginV2, "task"); err == nil {
		m.SetRuntime(runtimeAdapter{m: rt.(*runtimev2.Manager)})
		releaseDeadNetworks(rt.(*runtimev2.Manager), m)
		// Running containers get their monitors back before berthd
		// serves (the shim manager has reconnected to their shims);
		// containers that should run again start in the background.
		nss, err := db.Namespaces().List(ic.Context)
		if err != nil {
			return nil, fmt.Errorf("list namespaces to reconcile containers: %w", err)
		}
		if err := m.Reconcile(ic.Context, nss); err != nil {
			slog.Warn("reconcile containers", "error", err)
		}
	} else {
		slog.Warn("no container runtime: berth containers can be created but not run", "error", err)
	}
	ectx, stop := context.WithCancel(context.Background())
	if ex, err := ic.GetSingle(plugins.EventPlugin); err == nil {
		go watchOOM(ectx, ex.(*events.Exchange), m)
	}
	return &Manager{Manager: m, stopEvents: stop}, nil
}

// findInit locates the init binary for --init.
func findInit(configured string) string {
	if configured != "" {
		return configured
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "berth-init")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	// Only static builds: the binary runs inside containers of any image
	// (Debian's tini is dynamic, its tini-static is not).
	for _, name := range []string{"berth-init", "tini-static", "docker-init", "catatonit"} {
		if p, err := exec.LookPath(name); err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				return abs
			}
		}
	}
	return ""
}
