package run

import (
	"context"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthd/berth/core/mount"
)

// Runtime is what the manager needs from the shim manager: tasks of the
// namespace of the context, by container id. The plugin adapts berthd's
// runtime (io.containerd.runtime.v2 "task") to it.
type Runtime interface {
	// Create creates container id's task, not started.
	Create(ctx context.Context, id string, o TaskOptions) (Task, error)
	// Get returns container id's task; errdefs.ErrNotFound when it has
	// none.
	Get(ctx context.Context, id string) (Task, error)
}

// TaskOptions describe a task to create.
type TaskOptions struct {
	// Runtime is the shim runtime's name ("io.berth.runc.v2").
	Runtime string
	Spec    *specs.Spec
	Rootfs  []mount.Mount
	IO      IO
}

// IO names a process's streams as the shim takes them: FIFO paths, or a
// file:// log URI for Stdout (Stderr then follows it).
type IO struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// Exit is how a process ended.
type Exit struct {
	Status uint32
	At     time.Time
}

// Process is a task's init process or an exec'd one.
type Process interface {
	// ID is "" for the init process, else the exec id.
	ID() string
	Pid() uint32
	Start(ctx context.Context) error
	Kill(ctx context.Context, sig syscall.Signal, all bool) error
	ResizePty(ctx context.Context, width, height uint32) error
	// CloseIO closes the process's stdin.
	CloseIO(ctx context.Context) error
	// Wait returns when the process has exited.
	Wait(ctx context.Context) (Exit, error)
	// Delete removes a process that exited (for the init process: the
	// whole task, its bundle and rootfs mount) and returns its exit.
	Delete(ctx context.Context) (Exit, error)
}

// TaskStatus is a task's state as the shim reports it.
type TaskStatus struct {
	// Status is "created", "running", "paused", "pausing" or "stopped".
	Status string
	Pid    uint32
	Exit   Exit
}

// Task is a container's task.
type Task interface {
	Process
	Status(ctx context.Context) (TaskStatus, error)
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Exec(ctx context.Context, execID string, spec *specs.Process, io IO) (Process, error)
	// Pids lists the task's processes.
	Pids(ctx context.Context) ([]uint32, error)
	Metrics(ctx context.Context) (Metrics, error)
	// Rootfs is the host path where the task's root filesystem is
	// mounted while it runs.
	Rootfs() string
}

// Metrics are a task's resource counters.
type Metrics struct {
	// CPUNanos is the CPU time used so far.
	CPUNanos uint64
	// MemoryUsage excludes the page cache that can be reclaimed (inactive
	// files), as docker stats shows it; MemoryLimit is 0 without a limit.
	MemoryUsage, MemoryLimit uint64
	Pids                     uint64
	BlockRead, BlockWrite    uint64
	// OOMKills counts the processes the OOM killer ended in the
	// container's cgroup.
	OOMKills uint64
}
