package task

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"

	"github.com/berthd/berth/runtime/shim/cgroup"
	"github.com/berthd/berth/runtime/shim/runc"
	"github.com/berthd/berth/runtime/shim/stdio"
)

// state is where a process is in its life.
type state int

const (
	created state = iota
	running
	paused // init only: the whole container is frozen
	stopped
	deleted
)

func (s state) String() string {
	return [...]string{"created", "running", "paused", "stopped", "deleted"}[s]
}

func (s state) status() task.Status {
	return [...]task.Status{task.Status_CREATED, task.Status_RUNNING, task.Status_PAUSED, task.Status_STOPPED, task.Status_STOPPED}[s]
}

// container is one task: its init process, its execs and what the shim
// holds for it. Fields are guarded by Service.mu unless noted.
type container struct {
	id     string
	bundle string
	// rootfs is the mounted rootfs, "" when the request brought no mounts.
	rootfs string
	rt     *runc.Runtime
	stdio  stdio.Env
	// killAll is set when the container shares a pid namespace, so the rest
	// of its processes must be killed when init exits.
	killAll bool
	// syncDelete is set when the runtime's delete must run before Delete
	// answers (poststop hooks, processes left to kill); otherwise it runs
	// after the answer, off the latency of `run --rm`.
	syncDelete bool
	init       *process
	execs      map[string]*process
	cg         cgroup.Cgroup
	stopOOM    context.CancelFunc

	// runningExecs counts execs started whose exit is not yet published;
	// init's exit is published only after theirs.
	runningExecs int
}

// process is the init process or an exec of a container.
type process struct {
	c *container
	// execID is "" for the init process.
	execID string
	stdio  stdio.Config
	spec   []byte // execs only: the OCI process as JSON
	io     *stdio.ProcessIO

	state state
	pid   int
	// reaped is set once the process's exit was seen (or it was killed by a
	// delete before it started); its exit is published at most once.
	reaped   bool
	status   int
	exitedAt time.Time
	// exited is closed when the exit is published (or will never be).
	exited chan struct{}
}

func newProcess(c *container, execID string, cfg stdio.Config) *process {
	return &process{c: c, execID: execID, stdio: cfg, exited: make(chan struct{})}
}

// id is the process's id in events: the container id for init.
func (p *process) id() string {
	if p.execID == "" {
		return p.c.id
	}
	return p.execID
}

func (p *process) pidFile() string {
	if p.execID == "" {
		return filepath.Join(p.c.bundle, InitPidFile)
	}
	return filepath.Join(p.c.bundle, p.execID+".pid")
}

// setExited records the exit and releases waiters.
func (p *process) setExited(status int, at time.Time) {
	p.status = status
	p.exitedAt = at
	p.state = stopped
	select {
	case <-p.exited:
	default:
		close(p.exited)
	}
}

// openIO prepares the process's streams before the runtime runs it. With a
// terminal it only opens the console socket; the streams are connected
// when the runtime hands over the pty master.
func (p *process) openIO(ctx context.Context) (*runc.ConsoleSocket, error) {
	if p.stdio.Terminal {
		return runc.NewConsoleSocket()
	}
	pio, err := stdio.NewPipes(ctx, p.stdio, p.c.stdio)
	if err != nil {
		return nil, err
	}
	p.io = pio
	return nil, nil
}

// finishIO runs after the runtime returned: it closes the shim's copies of
// the process's pipe ends, or takes the pty master and connects it.
func (p *process) finishIO(ctx context.Context, sock *runc.ConsoleSocket) error {
	if sock == nil {
		p.io.CloseChildEnds()
		return nil
	}
	master, err := sock.ReceiveMaster(ctx)
	if err != nil {
		return err
	}
	pio, err := stdio.NewConsole(ctx, master, p.stdio, p.c.stdio)
	if err != nil {
		return err
	}
	p.io = pio
	return nil
}

// closeIO waits a little for the output to drain, then releases the
// streams.
func (p *process) closeIO() {
	if p.io == nil {
		return
	}
	if !p.io.Wait(10 * time.Second) {
		// A process left behind (a daemon holding stdout) keeps the pipe
		// open; the output copies are cut off.
		logger(p).Warn("process output still open after exit, closing it")
	}
	p.io.Close()
}

func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q: %w", path, data, errdefs.ErrInvalidArgument)
	}
	return pid, nil
}
