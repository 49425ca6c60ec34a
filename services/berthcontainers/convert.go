package berthcontainers

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/run"
	"github.com/berthd/berth/internal/protoconv"
	api "github.com/berthd/berth/proto/berth/containers/v1"
)

func optionsFromProto(c *api.Config) (run.Options, error) {
	if c == nil {
		return run.Options{}, fmt.Errorf("container config is required: %w", errdefs.ErrInvalidArgument)
	}
	o := run.Options{
		Image: c.Image, Cmd: c.Cmd, Entrypoint: c.Entrypoint, EntrypointSet: c.EntrypointSet,
		Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, GroupAdd: c.GroupAdd, Hostname: c.Hostname,
		Tty: c.Tty, OpenStdin: c.OpenStdin, StdinOnce: c.StdinOnce, ReadOnly: c.ReadOnly,
		Memory: c.Memory, MemorySwap: c.MemorySwap, NanoCPUs: c.NanoCpus, CPUShares: c.CpuShares,
		CpusetCpus: c.CpusetCpus, PidsLimit: c.PidsLimit, ShmSize: c.ShmSize, Ulimits: c.Ulimits,
		CapAdd: c.CapAdd, CapDrop: c.CapDrop, Privileged: c.Privileged, Init: c.Init,
		AutoRemove: c.AutoRemove, Labels: c.Labels, Runtime: c.Runtime, Snapshotter: c.Snapshotter,
		Platform: c.Platform, StopSignal: c.StopSignal,
	}
	if p := c.RestartPolicy; p != nil {
		o.RestartPolicy = run.RestartPolicy{Name: p.Name, MaximumRetryCount: int(p.MaximumRetryCount)}
	}
	if c.StopTimeout >= 0 {
		t := int(c.StopTimeout)
		o.StopTimeout = &t
	}
	if l := c.Log; l != nil {
		o.Log = run.LogConfig{MaxSize: l.MaxSize, MaxFile: int(l.MaxFile)}
	}
	if len(c.Sysctls) > 0 {
		o.Sysctls = map[string]string{}
		for _, kv := range c.Sysctls {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return run.Options{}, fmt.Errorf("sysctl %q is not key=value: %w", kv, errdefs.ErrInvalidArgument)
			}
			o.Sysctls[k] = v
		}
	}
	if err := networkFromProto(c, &o); err != nil {
		return run.Options{}, err
	}
	mountsFromProto(c, &o)
	return o, nil
}

func optionsToProto(o run.Options) *api.Config {
	c := &api.Config{
		Image: o.Image, Cmd: o.Cmd, Entrypoint: o.Entrypoint, EntrypointSet: o.EntrypointSet,
		Env: o.Env, WorkingDir: o.WorkingDir, User: o.User, GroupAdd: o.GroupAdd, Hostname: o.Hostname,
		Tty: o.Tty, OpenStdin: o.OpenStdin, StdinOnce: o.StdinOnce, ReadOnly: o.ReadOnly,
		Memory: o.Memory, MemorySwap: o.MemorySwap, NanoCpus: o.NanoCPUs, CpuShares: o.CPUShares,
		CpusetCpus: o.CpusetCpus, PidsLimit: o.PidsLimit, ShmSize: o.ShmSize, Ulimits: o.Ulimits,
		CapAdd: o.CapAdd, CapDrop: o.CapDrop, Privileged: o.Privileged, Init: o.Init,
		AutoRemove: o.AutoRemove, Labels: o.Labels, Runtime: o.Runtime, Snapshotter: o.Snapshotter,
		Platform: o.Platform, StopSignal: o.StopSignal, StopTimeout: -1,
		RestartPolicy: &api.RestartPolicy{Name: o.RestartPolicy.Name, MaximumRetryCount: int32(o.RestartPolicy.MaximumRetryCount)},
		Log:           &api.LogConfig{MaxSize: o.Log.MaxSize, MaxFile: int32(o.Log.MaxFile)},
	}
	if o.StopTimeout != nil {
		c.StopTimeout = int32(*o.StopTimeout)
	}
	for _, k := range sortedKeys(o.Sysctls) {
		c.Sysctls = append(c.Sysctls, k+"="+o.Sysctls[k])
	}
	networkToProto(o, c)
	mountsToProto(o, c)
	return c
}

func containerToProto(r run.Record) *api.Container {
	st := r.State
	c := &api.Container{
		Id: r.ID, Name: r.Config.Name, Image: r.Image, ImageId: r.Config.ImageID,
		Command: r.Config.Args, Created: protoconv.Timestamp(r.Config.Created),
		State: &api.State{
			Status: st.Status, Running: st.Running(), Paused: st.Status == run.StatusPaused,
			Restarting: st.Status == run.StatusRestarting, OomKilled: st.OOMKilled,
			Pid: int32(st.Pid), ExitCode: int32(st.ExitCode), Error: st.Error,
			StartedAt: protoconv.Timestamp(st.StartedAt), FinishedAt: protoconv.Timestamp(st.FinishedAt),
		},
		Config:       optionsToProto(r.Config.Options),
		RestartCount: int32(st.RestartCount),
		LogPath:      r.Config.Options.Log.Path,
		Snapshotter:  r.Snapshotter, SnapshotKey: r.SnapshotKey,
		Runtime: r.Runtime.Name, Labels: r.Labels, Managed: r.Managed,
		Platform: r.Config.Options.Platform,
	}
	c.Mounts = mountPointsToProto(r.Config.Mounts)
	if spec, err := r.Spec(); err == nil {
		c.Hostname = spec.Hostname
	}
	if !r.Managed {
		c.Name = r.ID
		c.Command = nil
		if spec, err := r.Spec(); err == nil && spec.Process != nil {
			c.Command = spec.Process.Args
		}
	}
	return c
}
