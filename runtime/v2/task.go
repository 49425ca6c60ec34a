package v2

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/internal/errgrpc"
)

// IO names a process's stdio as the shim understands it: FIFO paths,
// file:///path?... log files the shim writes, or binary:///path loggers.
type IO struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// State is a process's state as its shim reports it.
type State struct {
	ID         string
	ExecID     string
	Pid        uint32
	Status     tasktypes.Status
	Stdin      string
	Stdout     string
	Stderr     string
	Terminal   bool
	ExitStatus uint32
	ExitedAt   time.Time
}

// Task is a container's running (or ended) task under one shim.
type Task struct {
	namespace string
	id        string
	bundle    *bundle
	runtime   string
	binary    string

	client  *ttrpc.Client
	shim    taskapi.TTRPCTaskService
	stopLog func()

	// shimPid is the long-lived shim's pid, once known.
	shimPid int

	mu  sync.Mutex
	pid uint32
	// created is set once the task exists in its shim; before that it is
	// invisible and a closing connection is the creator's to handle.
	created    bool
	connClosed bool
	// expected is set once a close of the connection is berthd's doing
	// (Delete, shutdown): it is not a dead shim then.
	expected bool
	// deleted is set once the shim deleted the task: a call still under
	// way when the shim then shuts down finds no task, not a lost shim.
	deleted bool
	// gone closes when the task's shim was found dead and cleaned up;
	// exit then holds what is known of the end.
	gone    chan struct{}
	exit    *Exit
	cleanup sync.Once
}

// ID is the container id.
func (t *Task) ID() string { return t.id }

// Namespace is the task's namespace.
func (t *Task) Namespace() string { return t.namespace }

// Bundle is the task's bundle folder.
func (t *Task) Bundle() string { return t.bundle.path }

// Runtime is the runtime name the task was created with.
func (t *Task) Runtime() string { return t.runtime }

// PID is the pid of the task's init process.
func (t *Task) PID() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pid
}

func (t *Task) visible() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.created
}

// Dead returns how the task ended when its shim died (it is kept, stopped,
// until deleted), or nil while the shim lives.
func (t *Task) Dead() *Exit {
	select {
	case <-t.gone:
		return t.exit
	default:
		return nil
	}
}

// errShimDead is returned by calls to a task whose shim died.
func (t *Task) errShimDead() error {
	return fmt.Errorf("shim of task %q died: %w", t.id, errdefs.ErrNotFound)
}

// call runs one shim request, mapping the shim's status errors back to
// errdefs and a dead shim to ErrNotFound for the task.
func (t *Task) call(f func() error) error {
	if t.Dead() != nil {
		return t.errShimDead()
	}
	err := f()
	if err == nil {
		return nil
	}
	if errors.Is(err, ttrpc.ErrClosed) {
		t.mu.Lock()
		deleted := t.deleted
		t.mu.Unlock()
		if deleted {
			return fmt.Errorf("task %q was deleted: %w", t.id, errdefs.ErrNotFound)
		}
		return fmt.Errorf("shim of task %q: connection closed: %w", t.id, errdefs.ErrUnavailable)
	}
	return errgrpc.ToNative(err)
}

// Start starts the init process ("" execID) or an exec, returning its pid.
func (t *Task) Start(ctx context.Context, execID string) (uint32, error) {
	var resp *taskapi.StartResponse
	err := t.call(func() (err error) {
		resp, err = t.shim.Start(context.WithoutCancel(ctx), &taskapi.StartRequest{ID: t.id, ExecID: execID})
		return err
	})
	if err != nil {
		return 0, err
	}
	if execID == "" {
		t.mu.Lock()
		t.pid = resp.Pid
		t.mu.Unlock()
	}
	return resp.Pid, nil
}

// State reports the init process ("" execID) or an exec. A task whose
// shim died is stopped with the exit known from its cleanup.
func (t *Task) State(ctx context.Context, execID string) (State, error) {
	if exit := t.Dead(); exit != nil {
		if execID != "" {
			return State{}, fmt.Errorf("exec %q of task %q: %w", execID, t.id, errdefs.ErrNotFound)
		}
		return State{ID: t.id, Pid: exit.Pid, Status: tasktypes.Status_STOPPED, ExitStatus: exit.Status, ExitedAt: exit.Timestamp}, nil
	}
	var r *taskapi.StateResponse
	err := t.call(func() (err error) {
		r, err = t.shim.State(ctx, &taskapi.StateRequest{ID: t.id, ExecID: execID})
		return err
	})
	if err != nil {
		return State{}, err
	}
	st := State{
		ID: t.id, ExecID: execID, Pid: r.Pid, Status: r.Status,
		Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal,
		ExitStatus: r.ExitStatus,
	}
	if r.ExitedAt != nil {
		st.ExitedAt = r.ExitedAt.AsTime()
	}
	return st, nil
}

// Kill signals the init process ("" execID; all: every process of the
// container) or an exec.
func (t *Task) Kill(ctx context.Context, execID string, signal uint32, all bool) error {
	return t.call(func() error {
		_, err := t.shim.Kill(ctx, &taskapi.KillRequest{ID: t.id, ExecID: execID, Signal: signal, All: all})
		return err
	})
}

// Exec adds an exec process (spec: an OCI process as JSON in an Any);
// Start runs it.
func (t *Task) Exec(ctx context.Context, execID string, spec *anypb.Any, io IO) error {
	if execID == "" {
		return fmt.Errorf("exec in %q: empty exec id: %w", t.id, errdefs.ErrInvalidArgument)
	}
	return t.call(func() error {
		_, err := t.shim.Exec(ctx, &taskapi.ExecProcessRequest{
			ID: t.id, ExecID: execID, Spec: spec,
			Stdin: io.Stdin, Stdout: io.Stdout, Stderr: io.Stderr, Terminal: io.Terminal,
		})
		return err
	})
}

// Wait blocks until the init process ("" execID) or an exec exits. If the
// shim dies meanwhile, it returns the exit known from the cleanup.
func (t *Task) Wait(ctx context.Context, execID string) (Exit, error) {
	if exit := t.Dead(); exit != nil {
		return *exit, nil
	}
	resp, err := t.shim.Wait(ctx, &taskapi.WaitRequest{ID: t.id, ExecID: execID})
	if err != nil {
		if errors.Is(err, ttrpc.ErrClosed) {
			return t.waitGone(ctx)
		}
		return Exit{}, errgrpc.ToNative(err)
	}
	exit := Exit{Status: resp.ExitStatus}
	if resp.ExitedAt != nil {
		exit.Timestamp = resp.ExitedAt.AsTime()
	}
	return exit, nil
}

// waitGone waits for the cleanup of a shim whose connection closed: a
// dead shim's, reported as its exit, or berthd's own close.
func (t *Task) waitGone(ctx context.Context) (Exit, error) {
	t.mu.Lock()
	expected := t.expected
	t.mu.Unlock()
	if expected {
		return Exit{}, fmt.Errorf("task %q: connection to its shim closed: %w", t.id, errdefs.ErrUnavailable)
	}
	select {
	case <-t.gone:
		return *t.exit, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// deleteProcess removes an exec that ended and returns its exit.
func (t *Task) deleteProcess(ctx context.Context, execID string) (Exit, error) {
	var r *taskapi.DeleteResponse
	err := t.call(func() (err error) {
		r, err = t.shim.Delete(context.WithoutCancel(ctx), &taskapi.DeleteRequest{ID: t.id, ExecID: execID})
		return err
	})
	if err != nil {
		return Exit{}, err
	}
	return deleteExit(r), nil
}

// DeleteProcess removes an exec that ended and returns its exit; the init
// process goes with the task (Manager.Delete).
func (t *Task) DeleteProcess(ctx context.Context, execID string) (Exit, error) {
	if execID == "" {
		return Exit{}, fmt.Errorf("delete process of %q: empty exec id (delete the task instead): %w", t.id, errdefs.ErrInvalidArgument)
	}
	return t.deleteProcess(ctx, execID)
}

func deleteExit(r *taskapi.DeleteResponse) Exit {
	exit := Exit{Pid: r.Pid, Status: r.ExitStatus}
	if r.ExitedAt != nil {
		exit.Timestamp = r.ExitedAt.AsTime()
	}
	return exit
}

// ResizePty sets the window size of a terminal process.
func (t *Task) ResizePty(ctx context.Context, execID string, width, height uint32) error {
	return t.call(func() error {
		_, err := t.shim.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: t.id, ExecID: execID, Width: width, Height: height})
		return err
	})
}

// CloseIO closes a process's stdin.
func (t *Task) CloseIO(ctx context.Context, execID string) error {
	return t.call(func() error {
		_, err := t.shim.CloseIO(ctx, &taskapi.CloseIORequest{ID: t.id, ExecID: execID, Stdin: true})
		return err
	})
}

// Pause freezes the task.
func (t *Task) Pause(ctx context.Context) error {
	return t.call(func() error {
		_, err := t.shim.Pause(ctx, &taskapi.PauseRequest{ID: t.id})
		return err
	})
}

// Resume thaws the task.
func (t *Task) Resume(ctx context.Context) error {
	return t.call(func() error {
		_, err := t.shim.Resume(ctx, &taskapi.ResumeRequest{ID: t.id})
		return err
	})
}

// Pids lists the task's processes.
func (t *Task) Pids(ctx context.Context) ([]*tasktypes.ProcessInfo, error) {
	var r *taskapi.PidsResponse
	err := t.call(func() (err error) {
		r, err = t.shim.Pids(ctx, &taskapi.PidsRequest{ID: t.id})
		return err
	})
	if err != nil {
		return nil, err
	}
	return r.Processes, nil
}

// Update changes the task's resources (a LinuxResources Any).
func (t *Task) Update(ctx context.Context, resources *anypb.Any, annotations map[string]string) error {
	return t.call(func() error {
		_, err := t.shim.Update(ctx, &taskapi.UpdateTaskRequest{ID: t.id, Resources: resources, Annotations: annotations})
		return err
	})
}

// Stats returns the task's metrics as the shim encodes them
// (io.containerd.cgroups.v1.Metrics or v2).
func (t *Task) Stats(ctx context.Context) (*anypb.Any, error) {
	var r *taskapi.StatsResponse
	err := t.call(func() (err error) {
		r, err = t.shim.Stats(ctx, &taskapi.StatsRequest{ID: t.id})
		return err
	})
	if err != nil {
		return nil, err
	}
	return r.Stats, nil
}

// setExpected marks the coming close of the shim connection as berthd's
// doing; it reports false when the shim was already found dead.
func (t *Task) setExpected() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.Dead() != nil {
		return false
	}
	t.expected = true
	return true
}

// setDeleted records that the shim deleted the task; like setExpected,
// false when the shim died first.
func (t *Task) setDeleted() bool {
	t.mu.Lock()
	t.deleted = true
	t.mu.Unlock()
	return t.setExpected()
}

// closeConn closes the shim connection and the shim log.
func (t *Task) closeConn() {
	if t.client != nil {
		t.client.Close()
	}
	if t.stopLog != nil {
		t.stopLog()
	}
}
