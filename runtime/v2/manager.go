// Package v2 is berthd's shim manager: it runs every task under a shim v2
// binary (berth-shim-runc-v2, containerd-shim-runc-v2, any other shim
// following containerd's contract), keeps one ttrpc connection per task,
// reconnects to the shims that outlived a berthd restart, and cleans up
// after shims that died.
//
// A task's bundle is <State>/<namespace>/<id>/ (State is the runtime
// plugin's state folder, <state>/io.containerd.runtime.v2.task): the spec
// (config.json), the rootfs mount point, the shim log FIFO, the files
// naming the runtime and shim binary, and what the shim writes there
// itself (address, shim.pid, options.json, init.pid).
package v2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/internal/errgrpc"
)

// Event topics the manager publishes for tasks whose shim died (live shims
// publish their own).
const (
	TopicExit   = "/tasks/exit"
	TopicDelete = "/tasks/delete"
)

// Options configure a Manager.
type Options struct {
	// State holds the bundles: <State>/<namespace>/<id>.
	State string
	// RuntimeRoot is the OCI runtime's state root handed to runc shims
	// (the shim appends the namespace), so berth's containers never mix
	// with those of another runc user.
	RuntimeRoot string
	// Address is berthd's gRPC socket, TTRPCAddress the ttrpc socket shims
	// publish events to.
	Address      string
	TTRPCAddress string
	// Runtimes maps a runtime name to a shim binary (a name looked up like
	// the conventional ones, or an absolute path).
	Runtimes map[string]string
	// DefaultRuntime is used for tasks created without a runtime name.
	DefaultRuntime string
	// SearchDirs are searched for shim binaries before PATH.
	SearchDirs []string
	// Events receives /tasks/exit and /tasks/delete of dead shims.
	Events events.Publisher
	// ShimDebug starts shims with -debug.
	ShimDebug bool
	// SpareRuntime, when set, names a runtime whose shim is berth's own:
	// one spare shim of it is kept started ahead of need, so creating a
	// task of it runs no shim start command.
	SpareRuntime string
}

// DeleteHook is told when a task goes away: deleted by a client, or its
// shim found dead (while berthd runs or at its start). Callers use it to
// release what they hold for the container, such as its network.
type DeleteHook func(ctx context.Context, ev TaskDeleted)

// TaskDeleted describes a task that went away.
type TaskDeleted struct {
	Namespace string
	ID        string
	Exit      Exit
	// ShimDied is true when the shim was found dead rather than the task
	// deleted by a client.
	ShimDied bool
}

// Manager runs tasks under shims.
type Manager struct {
	opts Options
	self string // berthd's own binary, the shims' publish binary

	mu    sync.Mutex
	tasks map[string]*Task // by namespace "/" id
	// exiting holds the teardowns of deleted tasks, by task key: a new
	// task of the same id waits for its shim to be gone, as it would
	// otherwise find the old shim still serving its socket and join it.
	exiting   map[string]*teardown
	teardowns sync.WaitGroup
	hooks     []DeleteHook
	died      []TaskDeleted // found dead at start, replayed to late hooks
	closing   bool
	spares    *spares
}

func key(ns, id string) string { return ns + "/" + id }

// New returns a manager and reconnects to the shims of the bundles found
// under opts.State, cleaning up those whose shim is gone.
func New(ctx context.Context, opts Options) (*Manager, error) {
	if opts.State == "" || opts.Address == "" || opts.TTRPCAddress == "" || opts.RuntimeRoot == "" {
		return nil, fmt.Errorf("runtime manager needs state, runtime root and both daemon addresses: %w", errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(opts.State, 0o711); err != nil {
		return nil, fmt.Errorf("create runtime state folder: %w", err)
	}
	if err := os.MkdirAll(opts.RuntimeRoot, 0o711); err != nil {
		return nil, fmt.Errorf("create OCI runtime root: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find berthd's binary: %w", err)
	}
	m := &Manager{opts: opts, self: self, tasks: map[string]*Task{}, exiting: map[string]*teardown{}}
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	if opts.SpareRuntime != "" {
		// Without the binary, tasks of that runtime fail to create anyway,
		// with the error that names it.
		if binary, err := m.resolveBinary(opts.SpareRuntime); err == nil {
			m.spares = newSpares(binary, m.spareCommand(binary))
		}
	}
	return m, nil
}

// OnDelete registers h. Tasks found dead when the manager started are
// reported to it at once, so a hook registered after start-up misses
// nothing.
func (m *Manager) OnDelete(h DeleteHook) {
	m.mu.Lock()
	m.hooks = append(m.hooks, h)
	died := append([]TaskDeleted(nil), m.died...)
	m.mu.Unlock()
	for _, ev := range died {
		h(namespaces.WithNamespace(context.Background(), ev.Namespace), ev)
	}
}

func (m *Manager) runHooks(ev TaskDeleted) {
	m.mu.Lock()
	hooks := append([]DeleteHook(nil), m.hooks...)
	m.mu.Unlock()
	ctx := namespaces.WithNamespace(context.Background(), ev.Namespace)
	for _, h := range hooks {
		h(ctx, ev)
	}
}

// CreateOpts describe a new task.
type CreateOpts struct {
	// Spec is the OCI runtime spec as JSON (the container's spec Any's
	// value).
	Spec []byte
	// Rootfs is mounted by the shim on the bundle's rootfs.
	Rootfs []mount.Mount
	IO     IO
	// Runtime is the runtime name ("" for the default) or a shim path.
	Runtime string
	// RuntimeOptions are the container's; TaskOptions, when set, are the
	// request's and win, as in containerd.
	RuntimeOptions *anypb.Any
	TaskOptions    *anypb.Any
}

// Create starts a shim for the task and creates the task's init process
// in it; the task is created, not started.
func (m *Manager) Create(ctx context.Context, id string, opts CreateOpts) (_ *Task, err error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if err := identifiers.Validate(id); err != nil {
		return nil, fmt.Errorf("task id: %w", err)
	}
	runtime := opts.Runtime
	if runtime == "" {
		runtime = m.opts.DefaultRuntime
	}
	binary, err := m.resolveBinary(runtime)
	if err != nil {
		return nil, err
	}
	t := &Task{namespace: ns, id: id, runtime: runtime, binary: binary, gone: make(chan struct{})}
	if err := m.reserve(t); err != nil {
		return nil, err
	}
	m.awaitShimExit(key(ns, id))
	defer func() {
		if err != nil {
			m.forget(t)
		}
	}()
	if t.bundle, err = m.newBundle(ns, id, opts.Spec, runtime, binary); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if rerr := t.bundle.remove(); rerr != nil {
				slog.Warn("remove bundle of failed task", "namespace", ns, "id", id, "error", rerr)
			}
		}
	}()
	if err := m.startTask(ctx, t, opts); err != nil {
		return nil, err
	}
	return t, nil
}

// reserve claims the task's id; a task of a dead shim that was never
// deleted gives way.
func (m *Manager) reserve(t *Task) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return fmt.Errorf("runtime manager is shutting down: %w", errdefs.ErrUnavailable)
	}
	if old, ok := m.tasks[key(t.namespace, t.id)]; ok && old.Dead() == nil {
		return fmt.Errorf("task %q: %w", t.id, errdefs.ErrAlreadyExists)
	}
	m.tasks[key(t.namespace, t.id)] = t
	return nil
}

func (m *Manager) forget(t *Task) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tasks[key(t.namespace, t.id)] == t {
		delete(m.tasks, key(t.namespace, t.id))
	}
}

// startTask starts the shim, connects and creates the init process. On
// failure the shim is stopped again.
func (m *Manager) startTask(ctx context.Context, t *Task, opts CreateOpts) (err error) {
	t.stopLog, err = copyShimLog(t.bundle, t.namespace, t.id)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			t.stopLog()
		}
	}()
	shimOpts := opts.TaskOptions
	if shimOpts == nil {
		shimOpts = opts.RuntimeOptions
	}
	began := time.Now()
	address := m.adoptSpare(ctx, t, shimOpts)
	if address == "" {
		if address, err = m.startShim(ctx, t.binary, t.namespace, t.id, t.bundle.path, shimOpts); err != nil {
			return err
		}
	}
	started := time.Now()
	if err := os.WriteFile(filepath.Join(t.bundle.path, AddressFile), []byte("unix://"+address), 0o600); err != nil {
		m.killShim(t)
		return fmt.Errorf("record shim address: %w", err)
	}
	if err := m.connect(t, address); err != nil {
		m.killShim(t)
		return err
	}
	if resp, err := t.shim.Connect(ctx, &taskapi.ConnectRequest{ID: t.id}); err == nil {
		t.shimPid = int(resp.ShimPid)
	}
	createOpts, err := m.runcOptions(t.runtime, shimOpts)
	if err != nil {
		m.stopShim(ctx, t)
		return err
	}
	req := &taskapi.CreateTaskRequest{
		ID: t.id, Bundle: t.bundle.path, Rootfs: mountsToProto(opts.Rootfs),
		Terminal: opts.IO.Terminal, Stdin: opts.IO.Stdin, Stdout: opts.IO.Stdout, Stderr: opts.IO.Stderr,
		Options: createOpts,
	}
	// A task half created because the caller gave up would be left to
	// the dead-shim cleanup; finish it.
	resp, err := t.shim.Create(context.WithoutCancel(ctx), req)
	if err != nil {
		m.startTeardown(t, func() {})
		m.stopShim(ctx, t)
		// Whatever the runtime or the mounts left goes too.
		if _, derr := m.deleteShim(ctx, t.binary, t.namespace, t.id, t.bundle.path); derr != nil {
			slog.Warn("shim delete after failed create", "namespace", t.namespace, "id", t.id, "error", derr)
		}
		return fmt.Errorf("create task %q: %w", t.id, errgrpc.ToNative(err))
	}
	slog.Debug("task created", "namespace", t.namespace, "id", t.id,
		"shim_start", started.Sub(began), "create", time.Since(started))
	t.mu.Lock()
	t.pid = resp.Pid
	m.markCreated(t)
	return nil
}

// markCreated makes the task visible; t.mu is held and released. A shim
// that died before this point is cleaned up now, as its close was
// ignored while the task was being created.
func (m *Manager) markCreated(t *Task) {
	t.created = true
	died := t.connClosed && !t.expected
	t.mu.Unlock()
	if died {
		go m.cleanupDead(t, 0)
	}
}

// connect dials the shim and watches the connection: when it closes
// without berthd closing it, the shim died.
func (m *Manager) connect(t *Task, address string) error {
	conn, err := net.DialTimeout("unix", address, dialTimeout)
	if err != nil {
		return fmt.Errorf("connect to shim of %q: %w", t.id, err)
	}
	t.client = ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { m.shimClosed(t) }))
	t.shim = taskapi.NewTTRPCTaskClient(t.client)
	return nil
}

// dialTimeout bounds connecting to a shim: a live shim accepts at once, a
// dead one's socket refuses at once; only a wedged shim takes this long.
const dialTimeout = time.Second

// stopShim ends a shim that holds no task (a failed create).
func (m *Manager) stopShim(ctx context.Context, t *Task) {
	t.setExpected()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if _, err := t.shim.Shutdown(sctx, &taskapi.ShutdownRequest{ID: t.id}); err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		slog.Warn("shut down shim", "namespace", t.namespace, "id", t.id, "error", err)
		m.killShim(t)
	}
	t.closeConn()
}

// teardown is the shutdown of a deleted task's shim and the removal of
// its bundle, which Delete leaves running after it answered.
type teardown struct {
	done chan struct{}
	pid  int // the shim's, once told to shut down
}

// shimExitTimeout bounds the wait for a shim told to shut down.
const shimExitTimeout = 5 * time.Second

// startTeardown records the teardown of t, for a new task of its id to
// wait on, and runs f in the background.
func (m *Manager) startTeardown(t *Task, f func()) {
	td := &teardown{done: make(chan struct{}), pid: t.shimPid}
	m.mu.Lock()
	m.exiting[key(t.namespace, t.id)] = td
	m.teardowns.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.teardowns.Done()
		defer close(td.done)
		f()
	}()
}

// awaitShimExit waits until the teardown of the task key's last task is
// done and its shim exited: a few milliseconds after its Shutdown reply.
func (m *Manager) awaitShimExit(k string) {
	m.mu.Lock()
	td, ok := m.exiting[k]
	delete(m.exiting, k)
	m.mu.Unlock()
	if !ok {
		return
	}
	select {
	case <-td.done:
	case <-time.After(shimExitTimeout):
		return
	}
	if td.pid > 0 {
		waitPidExit(td.pid, shimExitTimeout)
	}
}

// killShim kills the shim named in the bundle's shim.pid, for shims that
// cannot be asked to stop.
func (m *Manager) killShim(t *Task) {
	t.setExpected()
	data, err := os.ReadFile(filepath.Join(t.bundle.path, "shim.pid"))
	if err != nil {
		return
	}
	var pid int
	if _, err := fmt.Sscan(string(data), &pid); err == nil && pid > 1 {
		killPid(pid)
	}
	if pid <= 1 && t.shimPid > 1 {
		killPid(t.shimPid)
	}
}

const shutdownTimeout = 5 * time.Second

// Get returns the task id of ctx's namespace.
func (m *Manager) Get(ctx context.Context, id string) (*Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	t, ok := m.tasks[key(ns, id)]
	m.mu.Unlock()
	if !ok || !t.visible() {
		return nil, fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
	}
	return t, nil
}

// Tasks lists the tasks of ctx's namespace, or of every namespace when all
// is set, sorted by namespace and id.
func (m *Manager) Tasks(ctx context.Context, all bool) ([]*Task, error) {
	ns := ""
	if !all {
		var err error
		if ns, err = namespaces.NamespaceRequired(ctx); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	out := make([]*Task, 0, len(m.tasks))
	for _, t := range m.tasks {
		if (all || t.namespace == ns) && t.visible() {
			out = append(out, t)
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return key(out[i].namespace, out[i].id) < key(out[j].namespace, out[j].id) })
	return out, nil
}

// Delete removes a task that is stopped (or created and never started):
// the shim deletes the container and unmounts its rootfs, then shuts down,
// and the bundle goes. It returns the init process's exit.
func (m *Manager) Delete(ctx context.Context, id string) (Exit, error) {
	t, err := m.Get(ctx, id)
	if err != nil {
		return Exit{}, err
	}
	if exit := t.Dead(); exit != nil {
		m.forget(t)
		return *exit, nil
	}
	resp, err := t.shim.Delete(context.WithoutCancel(ctx), &taskapi.DeleteRequest{ID: t.id})
	if err != nil {
		if errors.Is(err, ttrpc.ErrClosed) {
			// The shim died under the call; its cleanup reports the exit.
			exit, werr := t.waitGone(ctx)
			if werr == nil {
				m.forget(t)
			}
			return exit, werr
		}
		if err = errgrpc.ToNative(err); !errdefs.IsNotFound(err) {
			return Exit{}, fmt.Errorf("delete task %q: %w", t.id, err)
		}
		// The shim does not know the task: clear up what is left anyway.
		slog.Warn("shim does not know the task; removing it", "namespace", t.namespace, "id", t.id)
		resp = &taskapi.DeleteResponse{ExitStatus: 255, ExitedAt: timestamppb.Now()}
	}
	exit := deleteExit(resp)
	if !t.setDeleted() {
		// Died right after deleting: the cleanup already ran.
		m.forget(t)
		return exit, nil
	}
	// The shim deleted the container and unmounted its rootfs: the exit
	// can go back now, while the shim shuts down and the bundle goes.
	m.startTeardown(t, func() {
		m.stopShim(context.WithoutCancel(ctx), t)
		// The shim may still be finishing the runtime's delete, which
		// logs into the bundle: the bundle goes once the shim is gone.
		if t.shimPid > 0 {
			waitPidExit(t.shimPid, shimExitTimeout)
		}
		if err := t.bundle.remove(); err != nil {
			slog.Warn("remove bundle", "namespace", t.namespace, "id", t.id, "error", err)
		}
	})
	m.forget(t)
	m.runHooks(TaskDeleted{Namespace: t.namespace, ID: t.id, Exit: exit})
	return exit, nil
}

// shimClosed runs when a task's shim connection closes. Unless berthd
// closed it, the shim died: clean up after it.
func (m *Manager) shimClosed(t *Task) {
	t.mu.Lock()
	t.connClosed = true
	ignore := t.expected || !t.created
	t.mu.Unlock()
	m.mu.Lock()
	closing := m.closing
	m.mu.Unlock()
	if ignore || closing {
		return
	}
	slog.Warn("shim died; cleaning up", "namespace", t.namespace, "id", t.id)
	m.cleanupDead(t, 0)
}

// cleanupDead clears up after a task whose shim is gone: the shim's
// delete command removes the container from the OCI runtime and unmounts
// its rootfs, the bundle goes, /tasks/exit and /tasks/delete are
// published, and the task stays, stopped with that exit, until deleted.
// A known exit status (not 0) wins over the shim's report.
func (m *Manager) cleanupDead(t *Task, known uint32) {
	t.cleanup.Do(func() { m.cleanupDeadOnce(t, known) })
}

func (m *Manager) cleanupDeadOnce(t *Task, known uint32) {
	ctx := namespaces.WithNamespace(context.Background(), t.namespace)
	t.closeConn()
	exit := &Exit{Status: 255, Timestamp: time.Now().UTC()}
	if t.binary != "" {
		if e, err := m.deleteShim(ctx, t.binary, t.namespace, t.id, t.bundle.path); err != nil {
			slog.Warn("shim delete after shim died", "namespace", t.namespace, "id", t.id, "error", err)
		} else {
			exit = e
		}
	}
	if exit.Pid == 0 {
		exit.Pid = t.PID()
	}
	if known != 0 {
		exit.Status = known
	}
	removeDeadSocket(t.bundle)
	if err := t.bundle.remove(); err != nil {
		slog.Error("remove bundle of dead shim", "namespace", t.namespace, "id", t.id, "error", err)
	}
	t.mu.Lock()
	t.exit = exit
	close(t.gone)
	t.mu.Unlock()
	m.publishGone(ctx, t, exit)
	m.runHooks(TaskDeleted{Namespace: t.namespace, ID: t.id, Exit: *exit, ShimDied: true})
}

func (m *Manager) publishGone(ctx context.Context, t *Task, exit *Exit) {
	if m.opts.Events == nil {
		return
	}
	at := timestamppb.New(exit.Timestamp)
	if err := m.opts.Events.Publish(ctx, TopicExit, &eventstypes.TaskExit{
		ContainerID: t.id, ID: t.id, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: at,
	}); err != nil {
		slog.Warn("publish exit of dead shim", "id", t.id, "error", err)
	}
	if err := m.opts.Events.Publish(ctx, TopicDelete, &eventstypes.TaskDelete{
		ContainerID: t.id, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: at,
	}); err != nil {
		slog.Warn("publish delete of dead shim", "id", t.id, "error", err)
	}
}

// Close lets go of the shims without stopping them: they and their
// containers outlive berthd, which reconnects at its next start.
func (m *Manager) Close() error {
	m.spares.close()
	// Deleted tasks' shims get their Shutdown first.
	done := make(chan struct{})
	go func() { m.teardowns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shimExitTimeout):
	}
	m.mu.Lock()
	m.closing = true
	tasks := make([]*Task, 0, len(m.tasks))
	for _, t := range m.tasks {
		tasks = append(tasks, t)
	}
	m.mu.Unlock()
	for _, t := range tasks {
		t.setExpected()
		t.closeConn()
	}
	return nil
}

// removeDeadSocket removes the socket a killed shim left (containerd's
// shim 1.6 does not remove it in its delete command), unless something
// still serves it: a shim shared by a group of containers.
func removeDeadSocket(b *bundle) {
	addr, err := parseAddress([]byte(b.readFile(AddressFile)))
	if err != nil {
		return
	}
	conn, err := net.DialTimeout("unix", addr, dialTimeout)
	if err == nil {
		conn.Close()
		return
	}
	if err := os.Remove(addr); err != nil && !os.IsNotExist(err) {
		slog.Warn("remove socket of dead shim", "socket", addr, "error", err)
	}
}

func mountsToProto(ms []mount.Mount) []*apitypes.Mount {
	out := make([]*apitypes.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, &apitypes.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}
