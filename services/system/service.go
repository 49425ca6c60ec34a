// Package system serves berth.system.v1.System: `berth info` and
// `berth system df`.
package system

import (
	"context"
	"errors"
	"os"
	"runtime"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthd/berth/core/usage"
	"github.com/berthd/berth/internal/version"
	"github.com/berthd/berth/plugins"
	api "github.com/berthd/berth/proto/berth/system/v1"
)

// Plugins announce daemon-wide defaults through these export keys (the
// defaults plugin sets them).
const (
	ExportDefaultSnapshotter = "default_snapshotter"
	ExportDefaultRuntime     = "default_runtime"
)

// Service answers system calls.
type Service struct {
	api.UnimplementedSystemServer
	set     *plugins.Set
	root    string
	state   string
	uuid    func() string
	started time.Time
}

// Options configures the service.
type Options struct {
	Root, State string
	// UUID returns the server's identity (from introspection).
	UUID func() string
}

// New returns the service over the initialised plugins.
func New(set *plugins.Set, opts Options) *Service {
	if opts.UUID == nil {
		opts.UUID = func() string { return "" }
	}
	return &Service{set: set, root: opts.Root, state: opts.State, uuid: opts.UUID, started: time.Now()}
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterSystemServer(g, s)
	return nil
}

// Info describes the daemon and the host.
func (s *Service) Info(ctx context.Context, _ *api.InfoRequest) (*api.InfoResponse, error) {
	h := readHost()
	resp := &api.InfoResponse{
		ServerVersion:   version.Version,
		Revision:        version.Revision,
		KernelVersion:   h.kernel,
		OperatingSystem: h.os,
		OsType:          runtime.GOOS,
		Architecture:    h.arch,
		Ncpu:            int32(runtime.NumCPU()),
		MemTotal:        h.memTotal,
		CgroupVersion:   h.cgroupVersion,
		CgroupDriver:    "cgroupfs",
		RootDir:         s.root,
		StateDir:        s.state,
		Plugins:         &api.PluginCounts{},
		Uuid:            s.uuid(),
		StartedAt:       timestamppb.New(s.started),
		Pid:             int32(os.Getpid()),
	}
	for _, p := range s.set.All() {
		switch err := p.Err(); {
		case err == nil:
			resp.Plugins.Ok++
			if p.Registration.Type == plugins.SnapshotPlugin {
				resp.Snapshotters = append(resp.Snapshotters, p.Registration.ID)
			}
			if v := p.Meta.Exports[ExportDefaultSnapshotter]; v != "" {
				resp.DefaultSnapshotter = v
			}
			if v := p.Meta.Exports[ExportDefaultRuntime]; v != "" {
				resp.DefaultRuntime = v
			}
		case errors.Is(err, plugins.ErrSkipPlugin):
			resp.Plugins.Skipped++
		default:
			resp.Plugins.Errored++
			resp.Warnings = append(resp.Warnings, "plugin "+p.Registration.URI()+" failed: "+err.Error())
		}
	}
	if err := s.addCounts(ctx, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// addCounts fills in the per-namespace object and task counts.
func (s *Service) addCounts(ctx context.Context, resp *api.InfoResponse) error {
	per := map[string]*api.NamespaceCounts{}
	get := func(ns string) *api.NamespaceCounts {
		if per[ns] == nil {
			per[ns] = &api.NamespaceCounts{Namespace: ns}
		}
		return per[ns]
	}
	for _, inst := range s.instances() {
		if oc, ok := inst.(usage.ObjectCounter); ok {
			counts, err := oc.ObjectCounts(ctx)
			if err != nil {
				return err
			}
			for ns, kinds := range counts {
				c := get(ns)
				c.Images += kinds["images"]
				c.Containers += kinds["containers"]
			}
		}
		if tc, ok := inst.(usage.TaskCounter); ok {
			counts, err := tc.TaskCounts(ctx)
			if err != nil {
				return err
			}
			for ns, t := range counts {
				c := get(ns)
				c.Running += t.Running
				c.Paused += t.Paused
				c.Stopped += t.Stopped
			}
		}
	}
	names := make([]string, 0, len(per))
	for ns := range per {
		names = append(names, ns)
	}
	slices.Sort(names)
	for _, ns := range names {
		c := per[ns]
		// A container whose task was deleted (it exited and nothing
		// restarted it) is stopped too, as docker info counts it.
		if rest := c.Containers - c.Running - c.Paused; rest > c.Stopped {
			c.Stopped = rest
		}
		resp.PerNamespace = append(resp.PerNamespace, c)
		resp.Namespaces++
		resp.Images += c.Images
		resp.Containers += c.Containers
		resp.Running += c.Running
		resp.Paused += c.Paused
		resp.Stopped += c.Stopped
	}
	return nil
}

// DiskUsage adds up what every reporting plugin says.
func (s *Service) DiskUsage(ctx context.Context, req *api.DiskUsageRequest) (*api.DiskUsageResponse, error) {
	resp := &api.DiskUsageResponse{}
	for _, inst := range s.instances() {
		r, ok := inst.(usage.DiskReporter)
		if !ok {
			continue
		}
		sums, items, err := r.DiskUsage(ctx, req.Namespace, req.Verbose)
		if err != nil {
			return nil, err
		}
		for _, sm := range sums {
			resp.Summaries = append(resp.Summaries, &api.UsageSummary{Type: sm.Type, Total: sm.Total, Active: sm.Active, Size: sm.Size, Reclaimable: sm.Reclaimable})
		}
		for _, it := range items {
			resp.Items = append(resp.Items, &api.UsageItem{Type: it.Type, Namespace: it.Namespace, Name: it.Name, Size: it.Size, SharedSize: it.SharedSize, Users: it.Users})
		}
	}
	return resp, nil
}

// instances returns every working plugin instance once.
func (s *Service) instances() []any {
	var out []any
	for _, p := range s.set.All() {
		if inst, err := p.Instance(); err == nil && inst != nil && inst != any(s) {
			out = append(out, inst)
		}
	}
	return out
}
