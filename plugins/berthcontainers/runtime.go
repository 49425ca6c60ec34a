package berthcontainers

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	tasktypes "github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/core/run"
	runtimev2 "github.com/berthd/berth/runtime/v2"
)

// processTypeURL is the type URL containerd clients give an exec's OCI
// process spec.
const processTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

// runtimeAdapter gives core/run the shim manager's tasks.
type runtimeAdapter struct{ m *runtimev2.Manager }

var _ run.Runtime = runtimeAdapter{}

func (a runtimeAdapter) Create(ctx context.Context, id string, o run.TaskOptions) (run.Task, error) {
	spec, err := json.Marshal(o.Spec)
	if err != nil {
		return nil, fmt.Errorf("marshal spec: %w", err)
	}
	t, err := a.m.Create(ctx, id, runtimev2.CreateOpts{
		Spec: spec, Rootfs: o.Rootfs, Runtime: o.Runtime,
		IO: runtimev2.IO{Stdin: o.IO.Stdin, Stdout: o.IO.Stdout, Stderr: o.IO.Stderr, Terminal: o.IO.Terminal},
	})
	if err != nil {
		return nil, err
	}
	return &task{m: a.m, t: t}, nil
}

func (a runtimeAdapter) Get(ctx context.Context, id string) (run.Task, error) {
	t, err := a.m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &task{m: a.m, t: t}, nil
}

func toExit(e runtimev2.Exit) run.Exit {
	return run.Exit{Status: e.Status, At: e.Timestamp}
}

// process is an exec'd process of a task.
type process struct {
	t      *runtimev2.Task
	execID string
	pid    uint32
}

func (p *process) ID() string  { return p.execID }
func (p *process) Pid() uint32 { return p.pid }

func (p *process) Start(ctx context.Context) error {
	pid, err := p.t.Start(ctx, p.execID)
	p.pid = pid
	return err
}

func (p *process) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	return p.t.Kill(ctx, p.execID, uint32(sig), all)
}

func (p *process) ResizePty(ctx context.Context, w, h uint32) error {
	return p.t.ResizePty(ctx, p.execID, w, h)
}

func (p *process) CloseIO(ctx context.Context) error { return p.t.CloseIO(ctx, p.execID) }

func (p *process) Wait(ctx context.Context) (run.Exit, error) {
	e, err := p.t.Wait(ctx, p.execID)
	return toExit(e), err
}

func (p *process) Delete(ctx context.Context) (run.Exit, error) {
	e, err := p.t.DeleteProcess(ctx, p.execID)
	return toExit(e), err
}

// task is a container's task; its own methods act on the init process.
type task struct {
	m *runtimev2.Manager
	t *runtimev2.Task
}

var _ run.Task = (*task)(nil)

func (t *task) ID() string  { return "" }
func (t *task) Pid() uint32 { return t.t.PID() }

func (t *task) Start(ctx context.Context) error {
	_, err := t.t.Start(ctx, "")
	return err
}

func (t *task) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	return t.t.Kill(ctx, "", uint32(sig), all)
}

func (t *task) ResizePty(ctx context.Context, w, h uint32) error {
	return t.t.ResizePty(ctx, "", w, h)
}

func (t *task) CloseIO(ctx context.Context) error { return t.t.CloseIO(ctx, "") }

func (t *task) Wait(ctx context.Context) (run.Exit, error) {
	e, err := t.t.Wait(ctx, "")
	return toExit(e), err
}

func (t *task) Delete(ctx context.Context) (run.Exit, error) {
	e, err := t.m.Delete(ctx, t.t.ID())
	return toExit(e), err
}

func (t *task) Status(ctx context.Context) (run.TaskStatus, error) {
	st, err := t.t.State(ctx, "")
	if err != nil {
		return run.TaskStatus{}, err
	}
	return run.TaskStatus{
		Status: statusName(st.Status), Pid: st.Pid,
		Exit: run.Exit{Status: st.ExitStatus, At: st.ExitedAt},
	}, nil
}

func statusName(s tasktypes.Status) string {
	switch s {
	case tasktypes.Status_CREATED:
		return "created"
	case tasktypes.Status_RUNNING:
		return "running"
	case tasktypes.Status_PAUSED:
		return "paused"
	case tasktypes.Status_PAUSING:
		return "pausing"
	case tasktypes.Status_STOPPED:
		return "stopped"
	}
	return "unknown"
}

// Rootfs is the bundle's rootfs folder, where the shim mounts the
// container's root filesystem in berthd's mount namespace.
func (t *task) Rootfs() string { return filepath.Join(t.t.Bundle(), "rootfs") }

func (t *task) Pause(ctx context.Context) error  { return t.t.Pause(ctx) }
func (t *task) Resume(ctx context.Context) error { return t.t.Resume(ctx) }

func (t *task) Exec(ctx context.Context, execID string, spec *specs.Process, io run.IO) (run.Process, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("marshal process spec: %w", err)
	}
	err = t.t.Exec(ctx, execID, &anypb.Any{TypeUrl: processTypeURL, Value: b},
		runtimev2.IO{Stdin: io.Stdin, Stdout: io.Stdout, Stderr: io.Stderr, Terminal: io.Terminal})
	if err != nil {
		return nil, err
	}
	return &process{t: t.t, execID: execID}, nil
}

func (t *task) Pids(ctx context.Context) ([]uint32, error) {
	infos, err := t.t.Pids(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]uint32, 0, len(infos))
	for _, i := range infos {
		out = append(out, i.Pid)
	}
	return out, nil
}

// Metrics decodes the shim's cgroup v1 or v2 metrics.
func (t *task) Metrics(ctx context.Context) (run.Metrics, error) {
	a, err := t.t.Stats(ctx)
	if err != nil {
		return run.Metrics{}, err
	}
	switch name := a.GetTypeUrl()[strings.LastIndex(a.GetTypeUrl(), "/")+1:]; name {
	case "io.containerd.cgroups.v1.Metrics":
		var m v1stats.Metrics
		if err := proto.Unmarshal(a.GetValue(), &m); err != nil {
			return run.Metrics{}, fmt.Errorf("decode cgroup v1 metrics: %w", err)
		}
		return v1Metrics(&m), nil
	case "io.containerd.cgroups.v2.Metrics":
		var m v2stats.Metrics
		if err := proto.Unmarshal(a.GetValue(), &m); err != nil {
			return run.Metrics{}, fmt.Errorf("decode cgroup v2 metrics: %w", err)
		}
		return v2Metrics(&m), nil
	default:
		return run.Metrics{}, fmt.Errorf("unknown metrics type %q", a.GetTypeUrl())
	}
}

func v1Metrics(m *v1stats.Metrics) run.Metrics {
	var out run.Metrics
	out.CPUNanos = m.GetCPU().GetUsage().GetTotal()
	mem := m.GetMemory()
	usage := mem.GetUsage().GetUsage()
	if inactive := mem.GetTotalInactiveFile(); inactive < usage {
		usage -= inactive
	}
	out.MemoryUsage = usage
	out.MemoryLimit = mem.GetUsage().GetLimit()
	out.Pids = m.GetPids().GetCurrent()
	out.OOMKills = m.GetMemoryOomControl().GetOomKill()
	for _, e := range m.GetBlkio().GetIoServiceBytesRecursive() {
		switch strings.ToLower(e.GetOp()) {
		case "read":
			out.BlockRead += e.GetValue()
		case "write":
			out.BlockWrite += e.GetValue()
		}
	}
	return out
}

func v2Metrics(m *v2stats.Metrics) run.Metrics {
	var out run.Metrics
	out.CPUNanos = m.GetCPU().GetUsageUsec() * 1000
	mem := m.GetMemory()
	usage := mem.GetUsage()
	if inactive := mem.GetInactiveFile(); inactive < usage {
		usage -= inactive
	}
	out.MemoryUsage = usage
	out.MemoryLimit = mem.GetUsageLimit()
	out.Pids = m.GetPids().GetCurrent()
	out.OOMKills = m.GetMemoryEvents().GetOomKill()
	for _, e := range m.GetIo().GetUsage() {
		out.BlockRead += e.GetRbytes()
		out.BlockWrite += e.GetWbytes()
	}
	return out
}
