package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthd/berth/runtime/shim/cgroup"
	"github.com/berthd/berth/runtime/shim/runc"
	"github.com/berthd/berth/runtime/shim/stdio"
)

var _ taskapi.TTRPCTaskService = (*Service)(nil)

var empty = &emptypb.Empty{}

func timestamp(t time.Time) *timestamppb.Timestamp {
	return timestamppb.New(t)
}

func marshalAny(m proto.Message) (*anypb.Any, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: string(m.ProtoReflect().Descriptor().FullName()), Value: data}, nil
}

// lookup finds a container and one of its processes ("" is init).
func (s *Service) lookup(id, execID string) (*container, *process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	if execID == "" {
		return c, c.init, nil
	}
	p, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("exec %q of container %q: %w", execID, id, errdefs.ErrNotFound)
	}
	return c, p, nil
}

// Create mounts the rootfs, creates the container with the runtime and
// publishes /tasks/create.
func (s *Service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (_ *taskapi.CreateTaskResponse, err error) {
	if r.ID == "" {
		return nil, fmt.Errorf("create: empty container id: %w", errdefs.ErrInvalidArgument)
	}
	if r.Checkpoint != "" {
		return nil, fmt.Errorf("create from checkpoint: %w", errdefs.ErrNotImplemented)
	}
	if !filepath.IsAbs(r.Bundle) {
		return nil, fmt.Errorf("bundle path %q is not absolute: %w", r.Bundle, errdefs.ErrInvalidArgument)
	}
	opts, err := DecodeOptions(r.Options)
	if err != nil {
		return nil, err
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, err
	}
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	_, exists := s.containers[r.ID]
	pending := s.deleting[r.ID]
	s.mu.Unlock()
	if exists {
		return nil, fmt.Errorf("container %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	if pending != nil {
		// The runtime still holds the state of the last container of this
		// id; its delete is moments from done.
		<-pending
	}
	if err := WriteOptions(r.Bundle, opts); err != nil {
		return nil, err
	}
	c := &container{
		id:      r.ID,
		bundle:  r.Bundle,
		rt:      NewRuntime(opts, s.cfg.RuntimeRoot, s.cfg.Namespace, r.Bundle, s.cfg.Reaper),
		stdio:   stdio.Env{ID: r.ID, Namespace: s.cfg.Namespace, UID: int(opts.IoUid), GID: int(opts.IoGid), Reaper: s.cfg.Reaper},
		killAll: !privatePidNamespace(spec),
		execs:   map[string]*process{},
	}
	c.syncDelete = c.killAll || hasPoststopHooks(spec)
	c.init = newProcess(c, "", stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal})
	if len(r.Rootfs) > 0 {
		if err := c.mountRootfs(r.Rootfs); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				c.unmountRootfs()
			}
		}()
	}
	if err := s.createInit(ctx, c, opts); err != nil {
		return nil, err
	}
	s.watchCgroup(c)
	s.mu.Lock()
	s.containers[c.id] = c
	s.byPid[c.init.pid] = append(s.byPid[c.init.pid], c.init)
	s.mu.Unlock()
	s.publish(TopicCreate, &events.TaskCreate{
		ContainerID: c.id,
		Bundle:      c.bundle,
		Rootfs:      r.Rootfs,
		IO:          &events.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid:         uint32(c.init.pid),
	})
	logger(c.init).Info("created", "pid", c.init.pid, "runtime", c.rt.Binary)
	return &taskapi.CreateTaskResponse{Pid: uint32(c.init.pid)}, nil
}

// createInit runs the runtime's create for the container's init process.
func (s *Service) createInit(ctx context.Context, c *container, opts *options.Options) error {
	p := c.init
	sock, err := p.openIO(ctx)
	if err != nil {
		return err
	}
	if sock != nil {
		defer sock.Close()
	}
	co := runc.CreateOpts{PidFile: p.pidFile(), NoPivot: opts.NoPivotRoot, NoNewKeyring: opts.NoNewKeyring}
	if sock != nil {
		co.ConsoleSocket = sock.Path()
	} else {
		co.IO = p.io.Runtime()
	}
	// The container must not be half created because the caller gave up.
	rctx := context.WithoutCancel(ctx)
	if err := c.rt.Create(rctx, c.id, c.bundle, co); err != nil {
		if p.io != nil {
			p.io.Close()
		}
		return err
	}
	err = p.finishIO(ctx, sock)
	if err == nil {
		p.pid, err = readPid(p.pidFile())
	}
	if err != nil {
		if derr := c.rt.Delete(rctx, c.id, true); derr != nil {
			logger(p).Warn("remove half-created container", "error", derr)
		}
		if p.io != nil {
			p.io.Close()
		}
		return err
	}
	return nil
}

// watchCgroup loads the cgroup of the created init process and watches it
// for OOM kills. It runs before the process starts, so an OOM kill right at
// its start is seen too.
func (s *Service) watchCgroup(c *container) {
	cg, err := cgroup.Load(c.init.pid)
	if err != nil {
		logger(c.init).Warn("no cgroup statistics", "error", err)
		return
	}
	c.cg = cg
	w, err := cg.WatchOOM()
	if err != nil {
		logger(c.init).Warn("no OOM events", "error", err)
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	c.stopOOM = cancel
	go func() {
		err := w.Run(ctx, func() {
			logger(c.init).Info("out of memory")
			s.publish(TopicOOM, &events.TaskOOM{ContainerID: c.id})
		})
		if err != nil {
			logger(c.init).Warn("OOM events stopped", "error", err)
		}
	}()
}

// Start starts the init process or an exec and publishes /tasks/start or
// /tasks/exec-started.
func (s *Service) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if p.state != created || p.reaped {
		return nil, fmt.Errorf("start %s process %q: %w", p.state, p.id(), errdefs.ErrFailedPrecondition)
	}
	if p.execID == "" {
		err = s.startInit(ctx, c, p)
	} else {
		err = s.startExec(ctx, c, p)
	}
	if err != nil {
		return nil, err
	}
	return &taskapi.StartResponse{Pid: uint32(p.pid)}, nil
}

func (s *Service) startInit(ctx context.Context, c *container, p *process) error {
	if err := c.rt.Start(context.WithoutCancel(ctx), c.id); err != nil {
		return err
	}
	s.mu.Lock()
	p.state = running
	s.mu.Unlock()
	s.publish(TopicStart, &events.TaskStart{ContainerID: c.id, Pid: uint32(p.pid)})
	logger(p).Info("started")
	return nil
}

func (s *Service) startExec(ctx context.Context, c *container, p *process) error {
	if c.init.state != running || c.init.reaped {
		return fmt.Errorf("exec in container %q: init process is %s: %w", c.id, c.init.state, errdefs.ErrFailedPrecondition)
	}
	err := s.runExec(ctx, c, p)
	if err != nil {
		// The process never ran; its waiters learn that now.
		s.mu.Lock()
		p.reaped = true
		p.setExited(255, time.Now())
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	p.state = running
	s.byPid[p.pid] = append(s.byPid[p.pid], p)
	c.runningExecs++
	s.mu.Unlock()
	s.publish(TopicExecStarted, &events.TaskExecStarted{ContainerID: c.id, ExecID: p.execID, Pid: uint32(p.pid)})
	return nil
}

func (s *Service) runExec(ctx context.Context, c *container, p *process) error {
	sock, err := p.openIO(ctx)
	if err != nil {
		return err
	}
	if sock != nil {
		defer sock.Close()
	}
	eo := runc.ExecOpts{PidFile: p.pidFile()}
	if sock != nil {
		eo.ConsoleSocket = sock.Path()
	} else {
		eo.IO = p.io.Runtime()
	}
	err = c.rt.Exec(context.WithoutCancel(ctx), c.id, p.spec, eo)
	if err == nil {
		err = p.finishIO(ctx, sock)
	}
	if err == nil {
		p.pid, err = readPid(p.pidFile())
	}
	if err != nil && p.io != nil {
		p.io.Close()
	}
	return err
}

// Delete removes an exec, or the container once its init process stopped
// (or never started), and publishes /tasks/delete for the container.
func (s *Service) Delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if p.execID != "" {
		err = s.deleteExec(c, p)
	} else {
		err = s.deleteInit(ctx, c, p)
	}
	if err != nil {
		return nil, err
	}
	return &taskapi.DeleteResponse{Pid: uint32(p.pid), ExitStatus: uint32(p.status), ExitedAt: timestamp(p.exitedAt)}, nil
}

func (s *Service) deleteExec(c *container, p *process) error {
	if p.state == running {
		return fmt.Errorf("delete running exec %q: %w", p.execID, errdefs.ErrFailedPrecondition)
	}
	p.closeIO()
	os.Remove(p.pidFile())
	s.mu.Lock()
	delete(c.execs, p.execID)
	p.state = deleted
	s.mu.Unlock()
	return nil
}

func (s *Service) deleteInit(ctx context.Context, c *container, p *process) error {
	if p.state == running || p.state == paused {
		return fmt.Errorf("delete container %q: its task is %s: %w", c.id, p.state, errdefs.ErrFailedPrecondition)
	}
	rctx := context.WithoutCancel(ctx)
	neverStarted := p.state == created && !p.reaped
	// A stopped container in a pid namespace of its own has no process
	// left and no hook to run: what the runtime's delete removes (its
	// state, the cgroup) concerns nobody else, so it runs after the answer.
	async := p.state == stopped && p.reaped && !c.syncDelete
	if !async {
		if err := c.rt.Delete(rctx, c.id, true); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	s.mu.Lock()
	if neverStarted {
		// The runtime killed the created process; nobody will see its exit
		// event (the task never started), but Wait and Delete report it.
		s.untrack(p)
		p.reaped = true
		p.setExited(128+int(syscall.SIGKILL), time.Now())
	}
	for _, e := range c.execs {
		s.untrack(e)
	}
	s.mu.Unlock()
	if c.stopOOM != nil {
		c.stopOOM()
	}
	p.closeIO()
	for _, e := range c.execs {
		e.closeIO()
	}
	c.unmountRootfs()
	s.mu.Lock()
	p.state = deleted
	delete(s.containers, c.id)
	if async {
		s.deleteLater(c)
	}
	s.mu.Unlock()
	s.publish(TopicDelete, &events.TaskDelete{
		ContainerID: c.id,
		Pid:         uint32(p.pid),
		ExitStatus:  uint32(p.status),
		ExitedAt:    timestamp(p.exitedAt),
	})
	logger(p).Info("deleted", "status", p.status)
	return nil
}

// deleteLater runs the runtime's delete of c in the background; s.mu is
// held. A failure is logged: the container is stopped and its task gone,
// and the shim's delete command removes what is left if the shim dies.
func (s *Service) deleteLater(c *container) {
	done := make(chan struct{})
	s.deleting[c.id] = done
	s.deletes.Add(1)
	go func() {
		defer s.deletes.Done()
		if err := c.rt.Delete(context.Background(), c.id, true); err != nil && !errdefs.IsNotFound(err) {
			logger(c.init).Error("runtime delete", "error", err)
		}
		s.mu.Lock()
		delete(s.deleting, c.id)
		s.mu.Unlock()
		close(done)
	}()
}

// WaitDeletes waits for the runtime deletes still running: the runtime's
// state must be gone before the shim is.
func (s *Service) WaitDeletes() {
	s.deletes.Wait()
}

// untrack forgets p's pid, so a late exit is not attributed to it.
func (s *Service) untrack(p *process) {
	procs := s.byPid[p.pid]
	for i, q := range procs {
		if q == p {
			procs = append(procs[:i], procs[i+1:]...)
			break
		}
	}
	if len(procs) == 0 {
		delete(s.byPid, p.pid)
	} else {
		s.byPid[p.pid] = procs
	}
}

// Exec adds an exec process to a container and publishes
// /tasks/exec-added; Start runs it.
func (s *Service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	if err := validExecID(r.ExecID); err != nil {
		return nil, err
	}
	if r.Spec == nil {
		return nil, fmt.Errorf("exec %q: no process spec: %w", r.ExecID, errdefs.ErrInvalidArgument)
	}
	spec, err := execSpec(r.Spec.Value, r.Terminal)
	if err != nil {
		return nil, fmt.Errorf("exec %q: %w", r.ExecID, err)
	}
	c, _, err := s.lookup(r.ID, "")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if c.init.state != created && c.init.state != running || c.init.reaped {
		s.mu.Unlock()
		return nil, fmt.Errorf("exec in container %q: task is %s: %w", c.id, c.init.state, errdefs.ErrFailedPrecondition)
	}
	if _, ok := c.execs[r.ExecID]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("exec %q: %w", r.ExecID, errdefs.ErrAlreadyExists)
	}
	p := newProcess(c, r.ExecID, stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal})
	p.spec = spec
	c.execs[r.ExecID] = p
	s.mu.Unlock()
	s.publish(TopicExecAdded, &events.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return empty, nil
}

// State reports a process's status and stdio.
func (s *Service) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	status := p.state.status()
	if p.execID != "" && c.init.state == paused && p.state == running {
		status = task.Status_PAUSED
	}
	return &taskapi.StateResponse{
		ID:         p.id(),
		Bundle:     c.bundle,
		Pid:        uint32(p.pid),
		Status:     status,
		Stdin:      p.stdio.Stdin,
		Stdout:     p.stdio.Stdout,
		Stderr:     p.stdio.Stderr,
		Terminal:   p.stdio.Terminal,
		ExitStatus: uint32(p.status),
		ExitedAt:   timestamp(p.exitedAt),
		ExecID:     p.execID,
	}, nil
}

// Pause freezes the container and publishes /tasks/paused.
func (s *Service) Pause(ctx context.Context, r *taskapi.PauseRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, r.ID, true)
}

// Resume thaws the container and publishes /tasks/resumed.
func (s *Service) Resume(ctx context.Context, r *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, r.ID, false)
}

func (s *Service) freeze(ctx context.Context, id string, pause bool) (*emptypb.Empty, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	c, p, err := s.lookup(id, "")
	if err != nil {
		return nil, err
	}
	from, to, op, topic := running, paused, c.rt.Pause, TopicPaused
	var ev proto.Message = &events.TaskPaused{ContainerID: c.id}
	if !pause {
		from, to, op, topic = paused, running, c.rt.Resume, TopicResumed
		ev = &events.TaskResumed{ContainerID: c.id}
	}
	if p.state != from || p.reaped {
		return nil, fmt.Errorf("container %q is %s, not %s: %w", c.id, p.state, from, errdefs.ErrFailedPrecondition)
	}
	if err := op(context.WithoutCancel(ctx), c.id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	p.state = to
	s.mu.Unlock()
	s.publish(topic, ev)
	return empty, nil
}

// Kill signals the init process (all: every process of the container) or
// an exec.
func (s *Service) Kill(ctx context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	st, pid, exited := p.state, p.pid, p.reaped
	s.mu.Unlock()
	if st == deleted {
		return nil, fmt.Errorf("kill deleted process %q: %w", p.id(), errdefs.ErrNotFound)
	}
	if p.execID == "" {
		if err := c.rt.Kill(ctx, c.id, int(r.Signal), r.All); err != nil {
			if exited && !errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("kill %q: process already finished: %w", p.id(), errdefs.ErrNotFound)
			}
			return nil, err
		}
		return empty, nil
	}
	switch {
	case exited || st == stopped:
		return nil, fmt.Errorf("kill exec %q: process already finished: %w", p.execID, errdefs.ErrNotFound)
	case st == created:
		return nil, fmt.Errorf("kill exec %q: process not started: %w", p.execID, errdefs.ErrFailedPrecondition)
	}
	if err := syscall.Kill(pid, syscall.Signal(r.Signal)); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil, fmt.Errorf("kill exec %q: process already finished: %w", p.execID, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("kill exec %q: %w", p.execID, err)
	}
	return empty, nil
}

// Pids lists the container's processes; execs carry their exec id.
func (s *Service) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	c, _, err := s.lookup(r.ID, "")
	if err != nil {
		return nil, err
	}
	pids, err := c.rt.Ps(ctx, c.id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	execOf := map[int]string{}
	for id, e := range c.execs {
		if e.pid > 0 && !e.reaped {
			execOf[e.pid] = id
		}
	}
	s.mu.Unlock()
	resp := &taskapi.PidsResponse{}
	for _, pid := range pids {
		info := &task.ProcessInfo{Pid: uint32(pid)}
		if id, ok := execOf[pid]; ok {
			if info.Info, err = marshalAny(&options.ProcessDetails{ExecID: id}); err != nil {
				return nil, fmt.Errorf("encode details of process %d: %w", pid, err)
			}
		}
		resp.Processes = append(resp.Processes, info)
	}
	return resp, nil
}

// CloseIO closes the shim's hold on a process's stdin, so the process sees
// end of input when the client closes its side.
func (s *Service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	_, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin && p.io != nil {
		if err := p.io.CloseStdin(); err != nil {
			return nil, err
		}
	}
	return empty, nil
}

// ResizePty sets a terminal process's window size.
func (s *Service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	_, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if p.io != nil {
		if err := p.io.Resize(r.Width, r.Height); err != nil {
			return nil, err
		}
	}
	return empty, nil
}

// Update applies new resource limits (a JSON LinuxResources) to the
// container.
func (s *Service) Update(ctx context.Context, r *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	if r.Resources == nil {
		return nil, fmt.Errorf("update: no resources: %w", errdefs.ErrInvalidArgument)
	}
	var res map[string]json.RawMessage
	if err := json.Unmarshal(r.Resources.Value, &res); err != nil {
		return nil, fmt.Errorf("update: resources are not a JSON object: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	data := r.Resources.Value
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	c, p, err := s.lookup(r.ID, "")
	if err != nil {
		return nil, err
	}
	if p.state == stopped || p.state == deleted || p.reaped {
		return nil, fmt.Errorf("update container %q: task is stopped: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if err := c.rt.Update(context.WithoutCancel(ctx), c.id, data); err != nil {
		return nil, err
	}
	return empty, nil
}

// Wait blocks until the process's exit is published and returns it.
func (s *Service) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	_, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &taskapi.WaitResponse{ExitStatus: uint32(p.status), ExitedAt: timestamp(p.exitedAt)}, nil
}

// Stats returns the container's cgroup metrics as
// io.containerd.cgroups.v1.Metrics or io.containerd.cgroups.v2.Metrics.
func (s *Service) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	c, _, err := s.lookup(r.ID, "")
	if err != nil {
		return nil, err
	}
	if c.cg == nil {
		return nil, fmt.Errorf("cgroup of container %q: %w", c.id, errdefs.ErrNotFound)
	}
	m, err := c.cg.Stats()
	if err != nil {
		return nil, err
	}
	a, err := marshalAny(m)
	if err != nil {
		return nil, fmt.Errorf("encode metrics: %w", err)
	}
	return &taskapi.StatsResponse{Stats: a}, nil
}

// Connect returns the shim's pid and the container's.
func (s *Service) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	resp := &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if _, p, err := s.lookup(r.ID, ""); err == nil {
		s.mu.Lock()
		resp.TaskPid = uint32(p.pid)
		s.mu.Unlock()
	}
	return resp, nil
}

// Shutdown ends the shim once it holds no containers; otherwise it does
// nothing, as other containers of a group may still use the shim.
func (s *Service) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n == 0 && s.cfg.Shutdown != nil {
		s.shutdown.Do(func() {
			go func() {
				s.WaitDeletes()
				s.cfg.Shutdown()
			}()
		})
	}
	return empty, nil
}

// Checkpoint is not supported.
func (s *Service) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, fmt.Errorf("checkpoint: %w", errdefs.ErrNotImplemented)
}

// execSpec checks that raw is a JSON object (an OCI process; the runtime
// validates the rest) and sets its terminal field, as the request's
// terminal flag decides. The process is kept as JSON, not decoded into the
// runtime-spec types: the shim only passes it on.
func execSpec(raw []byte, terminal bool) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("process spec is not a JSON object: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if _, ok := fields["args"]; !ok {
		return nil, fmt.Errorf("process spec has no args: %w", errdefs.ErrInvalidArgument)
	}
	fields["terminal"] = json.RawMessage(strconv.FormatBool(terminal))
	return json.Marshal(fields)
}
