// Package tasks serves containerd.services.tasks.v1.Tasks over the shim
// manager, with containerd's semantics (ctr and the containerd clients rely
// on them): tasks are found through their container records, Create
// returns the init pid, Delete returns the exit, Wait blocks until exit.
package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	api "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/containers"
	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/internal/protoconv"
	runtimev2 "github.com/berthd/berth/runtime/v2"
)

var empty = &emptypb.Empty{}

// Service answers task calls.
type Service struct {
	api.UnimplementedTasksServer
	containers containers.Store
	runtime    *runtimev2.Manager
}

// New returns the service over the container records and the manager.
func New(cs containers.Store, m *runtimev2.Manager) *Service {
	return &Service{containers: cs, runtime: m}
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterTasksServer(g, s)
	return nil
}

// Create starts a shim for the container and creates its task.
func (s *Service) Create(ctx context.Context, r *api.CreateTaskRequest) (*api.CreateTaskResponse, error) {
	c, err := s.containers.Get(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	if r.Checkpoint != nil {
		return nil, fmt.Errorf("create task %q from a checkpoint: %w", r.ContainerID, errdefs.ErrNotImplemented)
	}
	if r.TaskApiAddress != "" {
		return nil, fmt.Errorf("create task %q on an existing task API: %w", r.ContainerID, errdefs.ErrNotImplemented)
	}
	if c.Spec == nil || len(c.Spec.GetValue()) == 0 {
		return nil, fmt.Errorf("container %q has no spec: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	opts := runtimev2.CreateOpts{
		Spec:        c.Spec.GetValue(),
		Rootfs:      protoconv.MountsFromProto(r.Rootfs),
		IO:          runtimev2.IO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Runtime:     c.Runtime.Name,
		TaskOptions: r.Options,
	}
	if r.RuntimePath != "" {
		opts.Runtime = r.RuntimePath
	}
	if c.Runtime.Options != nil {
		opts.RuntimeOptions = typeurl.MarshalProto(c.Runtime.Options)
	}
	t, err := s.runtime.Create(ctx, c.ID, opts)
	if err != nil {
		return nil, err
	}
	return &api.CreateTaskResponse{ContainerID: c.ID, Pid: t.PID()}, nil
}

// task finds the task of a container that exists.
func (s *Service) task(ctx context.Context, id string) (*runtimev2.Task, error) {
	if _, err := s.containers.Get(ctx, id); err != nil {
		return nil, err
	}
	return s.runtime.Get(ctx, id)
}

// Start starts the init process or an exec.
func (s *Service) Start(ctx context.Context, r *api.StartRequest) (*api.StartResponse, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	pid, err := t.Start(ctx, r.ExecID)
	if err != nil {
		return nil, err
	}
	return &api.StartResponse{Pid: pid}, nil
}

// Delete removes a stopped task and returns its exit.
func (s *Service) Delete(ctx context.Context, r *api.DeleteTaskRequest) (*api.DeleteResponse, error) {
	if _, err := s.containers.Get(ctx, r.ContainerID); err != nil {
		return nil, err
	}
	exit, err := s.runtime.Delete(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	return &api.DeleteResponse{ID: r.ContainerID, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: protoconv.Timestamp(exit.Timestamp)}, nil
}

// DeleteProcess removes an exec that ended.
func (s *Service) DeleteProcess(ctx context.Context, r *api.DeleteProcessRequest) (*api.DeleteResponse, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	exit, err := t.DeleteProcess(ctx, r.ExecID)
	if err != nil {
		return nil, err
	}
	return &api.DeleteResponse{ID: r.ExecID, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: protoconv.Timestamp(exit.Timestamp)}, nil
}

// Get reports the init process or an exec.
func (s *Service) Get(ctx context.Context, r *api.GetRequest) (*api.GetResponse, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	p, err := processOf(ctx, t, r.ExecID)
	if err != nil {
		return nil, err
	}
	return &api.GetResponse{Process: p}, nil
}

// stateTimeout bounds one shim's answer while listing: a wedged shim must
// not hang the whole list.
const stateTimeout = 2 * time.Second

func processOf(ctx context.Context, t *runtimev2.Task, execID string) (*tasktypes.Process, error) {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	st, err := t.State(ctx, execID)
	if err != nil {
		return nil, err
	}
	id := t.ID()
	if execID != "" {
		id = execID
	}
	return &tasktypes.Process{
		ContainerID: t.ID(), ID: id, Pid: st.Pid, Status: st.Status,
		Stdin: st.Stdin, Stdout: st.Stdout, Stderr: st.Stderr, Terminal: st.Terminal,
		ExitStatus: st.ExitStatus, ExitedAt: protoconv.Timestamp(st.ExitedAt),
	}, nil
}

// List reports the tasks of the namespace, asking their shims in
// parallel. A task deleted meanwhile is left out; one whose shim does not
// answer is listed with status unknown.
func (s *Service) List(ctx context.Context, r *api.ListTasksRequest) (*api.ListTasksResponse, error) {
	f, err := filters.ParseAll(r.Filter)
	if err != nil {
		return nil, fmt.Errorf("task filter: %w", err)
	}
	ts, err := s.runtime.Tasks(ctx, false)
	if err != nil {
		return nil, err
	}
	procs := make([]*tasktypes.Process, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := processOf(ctx, t, "")
			switch {
			case errdefs.IsNotFound(err):
			case err != nil:
				slog.Warn("task state", "id", t.ID(), "error", err)
				procs[i] = &tasktypes.Process{ContainerID: t.ID(), ID: t.ID(), Pid: t.PID(), Status: tasktypes.Status_UNKNOWN}
			default:
				procs[i] = p
			}
		}()
	}
	wg.Wait()
	resp := &api.ListTasksResponse{}
	for _, p := range procs {
		if p != nil && f.Match(processAdaptor(p)) {
			resp.Tasks = append(resp.Tasks, p)
		}
	}
	return resp, nil
}

// processAdaptor lets filters match id, pid and status ("running").
func processAdaptor(p *tasktypes.Process) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		if len(fp) != 1 {
			return "", false
		}
		switch fp[0] {
		case "id", "container_id":
			return p.ID, true
		case "pid":
			return fmt.Sprint(p.Pid), true
		case "status":
			return statusName(p.Status), true
		}
		return "", false
	})
}

// Kill signals the init process or an exec.
func (s *Service) Kill(ctx context.Context, r *api.KillRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Kill(ctx, r.ExecID, r.Signal, r.All); err != nil {
		return nil, err
	}
	return empty, nil
}

// Exec adds an exec process; Start runs it.
func (s *Service) Exec(ctx context.Context, r *api.ExecProcessRequest) (*emptypb.Empty, error) {
	if r.ExecID == "" {
		return nil, fmt.Errorf("exec id is required: %w", errdefs.ErrInvalidArgument)
	}
	if r.Spec == nil {
		return nil, fmt.Errorf("exec %q: process spec is required: %w", r.ExecID, errdefs.ErrInvalidArgument)
	}
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	io := runtimev2.IO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	if err := t.Exec(ctx, r.ExecID, r.Spec, io); err != nil {
		return nil, err
	}
	return empty, nil
}

// ResizePty sets a terminal's size.
func (s *Service) ResizePty(ctx context.Context, r *api.ResizePtyRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.ResizePty(ctx, r.ExecID, r.Width, r.Height); err != nil {
		return nil, err
	}
	return empty, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *api.CloseIORequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		if err := t.CloseIO(ctx, r.ExecID); err != nil {
			return nil, err
		}
	}
	return empty, nil
}

// Pause freezes a task.
func (s *Service) Pause(ctx context.Context, r *api.PauseTaskRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Pause(ctx); err != nil {
		return nil, err
	}
	return empty, nil
}

// Resume thaws a task.
func (s *Service) Resume(ctx context.Context, r *api.ResumeTaskRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Resume(ctx); err != nil {
		return nil, err
	}
	return empty, nil
}

// ListPids lists a task's processes.
func (s *Service) ListPids(ctx context.Context, r *api.ListPidsRequest) (*api.ListPidsResponse, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	procs, err := t.Pids(ctx)
	if err != nil {
		return nil, err
	}
	return &api.ListPidsResponse{Processes: procs}, nil
}

// Checkpoint is not supported.
func (s *Service) Checkpoint(ctx context.Context, r *api.CheckpointTaskRequest) (*api.CheckpointTaskResponse, error) {
	return nil, fmt.Errorf("checkpoint of %q: %w", r.ContainerID, errdefs.ErrNotImplemented)
}

// Update changes a task's resources.
func (s *Service) Update(ctx context.Context, r *api.UpdateTaskRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Update(ctx, r.Resources, r.Annotations); err != nil {
		return nil, err
	}
	return empty, nil
}

// Metrics returns the cgroup metrics of the tasks matching any filter (id,
// namespace), as their shims encode them.
func (s *Service) Metrics(ctx context.Context, r *api.MetricsRequest) (*api.MetricsResponse, error) {
	f, err := filters.ParseAll(r.Filters...)
	if err != nil {
		return nil, fmt.Errorf("metrics filter: %w", err)
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	ts, err := s.runtime.Tasks(ctx, false)
	if err != nil {
		return nil, err
	}
	resp := &api.MetricsResponse{}
	for _, t := range ts {
		match := f.Match(filters.AdapterFunc(func(fp []string) (string, bool) {
			switch {
			case len(fp) == 1 && fp[0] == "id":
				return t.ID(), true
			case len(fp) == 1 && fp[0] == "namespace":
				return ns, true
			}
			return "", false
		}))
		if !match {
			continue
		}
		collected := time.Now()
		data, err := t.Stats(ctx)
		if err != nil {
			if !errdefs.IsNotFound(err) {
				slog.Warn("task metrics", "id", t.ID(), "error", err)
			}
			continue
		}
		resp.Metrics = append(resp.Metrics, &types.Metric{Timestamp: protoconv.Timestamp(collected), ID: t.ID(), Data: data})
	}
	return resp, nil
}

// Wait blocks until the init process or an exec exits.
func (s *Service) Wait(ctx context.Context, r *api.WaitRequest) (*api.WaitResponse, error) {
	t, err := s.task(ctx, r.ContainerID)
	if err != nil {
		return nil, err
	}
	exit, err := t.Wait(ctx, r.ExecID)
	if err != nil {
		return nil, err
	}
	return &api.WaitResponse{ExitStatus: exit.Status, ExitedAt: protoconv.Timestamp(exit.Timestamp)}, nil
}

// statusName is a status as filters and people write it.
func statusName(s tasktypes.Status) string {
	switch s {
	case tasktypes.Status_CREATED:
		return "created"
	case tasktypes.Status_RUNNING:
		return "running"
	case tasktypes.Status_STOPPED:
		return "stopped"
	case tasktypes.Status_PAUSED:
		return "paused"
	case tasktypes.Status_PAUSING:
		return "pausing"
	}
	return "unknown"
}
