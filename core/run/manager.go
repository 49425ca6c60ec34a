// Package run keeps Docker-style containers: it creates them from images
// (spec, writable snapshot, record), runs them through a Runtime with
// their output in a rotated log file, restarts them by policy, and turns
// their writable layers into images, diffs and tars.
//
// A container is a containerd container record (so ctr sees it) with
// berth's settings and state in two extensions (see Config and State).
// Every method that takes a container reference accepts a name, a full id
// or a unique id prefix. Lifecycle changes of one container are serialised
// by a per-container lock; a monitor goroutine per running container waits
// for its exit and applies the restart policy.
package run

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"

	"github.com/berthd/berth/core/containers"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/core/volumes"
)

// Unpacker unpacks images into snapshotters (plugins/diff's
// ImageUnpacker).
type Unpacker interface {
	Unpack(ctx context.Context, img images.Image, snapshotter string, platform platforms.MatchComparer) (chainID, used string, err error)
	// Snapshotter resolves a snapshotter name ("" is the default).
	Snapshotter(ctx context.Context, name string) (string, snapshots.Snapshotter, error)
}

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	Containers containers.Store
	Images     images.Store
	Content    content.Store
	// Snapshotters returns a snapshotter by name (nil when not loaded).
	Snapshotters func(name string) snapshots.Snapshotter
	Unpacker     Unpacker
	// Comparer writes layer diffs for commit.
	Comparer diff.Comparer
	// Leases protect what commit writes until the image is recorded.
	Leases leases.Manager
	// Runtime runs tasks; nil makes every call that needs a task fail
	// with errdefs.ErrUnavailable.
	Runtime Runtime
	// Root keeps logs (persistent); State keeps FIFOs (lost at reboot).
	Root, State string
	// DefaultRuntime is used when a container names none.
	DefaultRuntime string
	// LogMaxSize and LogMaxFile are the default log rotation.
	LogMaxSize int64
	LogMaxFile int
	// InitBinary is the host path of the init --init runs ("" when none
	// is installed).
	InitBinary string
	// StopTimeout is the default time between the stop signal and
	// SIGKILL.
	StopTimeout time.Duration
	// Network gives containers their networks; nil leaves each with a
	// bare network namespace (only "none" and "host" can be asked for).
	Network network.Manager
	// Volumes keeps the volumes containers mount; nil refuses containers
	// with volumes (binds and tmpfs mounts need no store).
	Volumes *volumes.Store
	// Namespaces lists every namespace, for reports over all of them
	// (disk usage); nil limits them to the caller's.
	Namespaces func(ctx context.Context) ([]string, error)
}

// Manager keeps containers.
type Manager struct {
	o ManagerOptions

	mu      sync.Mutex
	entries map[string]*entry
	// reserved holds names being created (namespace/name), so two creates
	// cannot take the same name.
	reserved map[string]string

	ctx    context.Context // ends when the manager closes
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a manager.
func New(o ManagerOptions) *Manager {
	if o.StopTimeout == 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.LogMaxFile == 0 {
		o.LogMaxFile = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{o: o, entries: map[string]*entry{}, reserved: map[string]string{}, ctx: ctx, cancel: cancel}
}

// SetRuntime supplies the runtime once it is available.
func (m *Manager) SetRuntime(r Runtime) {
	m.mu.Lock()
	m.o.Runtime = r
	m.mu.Unlock()
}

func (m *Manager) runtime() (Runtime, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.o.Runtime == nil {
		return nil, fmt.Errorf("berthd has no container runtime loaded: %w", errdefs.ErrUnavailable)
	}
	return m.o.Runtime, nil
}

// Close stops the monitors and pending restarts; running containers keep
// running and are picked up again by Reconcile.
func (m *Manager) Close() error {
	m.cancel()
	m.mu.Lock()
	for _, e := range m.entries {
		e.stopTimer()
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// entry is the manager's in-memory side of one container.
type entry struct {
	mu  sync.Mutex // serialises lifecycle changes
	run *runState  // the current run; nil when not running
	// exited is closed (and replaced) at every exit, after the state is
	// recorded; removed is closed when the container is removed.
	exited  chan struct{}
	removed chan struct{}
	// started is closed (and replaced) at every start.
	started chan struct{}
	// lastCode is the exit code of the last run; lastRun the last run
	// started.
	lastCode int
	lastRun  *runState
	// timer is a pending restart; backoff its delay's base.
	timer   *time.Timer
	backoff time.Duration
}

func (e *entry) notifyStarted() {
	close(e.started)
	e.started = make(chan struct{})
}

func (e *entry) notifyExited(code int) {
	e.lastCode = code
	close(e.exited)
	e.exited = make(chan struct{})
}

func (e *entry) stopTimer() {
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
}

// runState is one run of a container: from its start to its exit.
type runState struct {
	task    Task
	started time.Time
	// done is closed once the exit is recorded.
	done chan struct{}
	// code is the exit code, valid once done is closed.
	code int
	// stdin is berthd's writer on the stdin FIFO, opened on first attach.
	stdinMu     sync.Mutex
	stdin       *stdinWriter
	stdinClosed bool
	// drained is closed when the task is deleted: the shim has flushed
	// the log.
	drained chan struct{}
	// oom is set when the kernel's OOM killer hit the container.
	oom bool
	// memoryLimited is set when the container has a memory limit: its
	// exit is checked for OOM kills the events did not report in time.
	memoryLimited bool
}

func key(ns, id string) string { return ns + "/" + id }

// entry returns the in-memory side of container id of ns.
func (m *Manager) entry(ns, id string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key(ns, id)]
	if !ok {
		e = &entry{exited: make(chan struct{}), removed: make(chan struct{}), started: make(chan struct{})}
		m.entries[key(ns, id)] = e
	}
	return e
}

// lookupEntry returns the in-memory side of container id of ns, nil
// when there is none.
func (m *Manager) lookupEntry(ns, id string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entries[key(ns, id)]
}

// NoteOOM records that container id of ns hit its memory limit in its
// current run: the exit that follows is reported with OOMKilled.
func (m *Manager) NoteOOM(ns, id string) {
	e := m.lookupEntry(ns, id)
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.run != nil {
		e.run.oom = true
	}
}

func (m *Manager) dropEntry(ns, id string) {
	m.mu.Lock()
	delete(m.entries, key(ns, id))
	m.mu.Unlock()
}

// Resolve finds the container ref names: an id, a name or a unique id
// prefix, in that order.
func (m *Manager) Resolve(ctx context.Context, ref string) (Record, error) {
	if ref == "" {
		return Record{}, fmt.Errorf("container name or id must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if c, err := m.o.Containers.Get(ctx, ref); err == nil {
		return decodeRecord(c)
	} else if !errdefs.IsNotFound(err) && !errdefs.IsInvalidArgument(err) {
		return Record{}, err
	}
	if byName, err := m.o.Containers.List(ctx, nameFilter(ref)); err != nil {
		return Record{}, err
	} else if len(byName) > 0 {
		return decodeRecord(byName[0])
	}
	all, err := m.o.Containers.List(ctx)
	if err != nil {
		return Record{}, err
	}
	var match []containers.Container
	for _, c := range all {
		if strings.HasPrefix(c.ID, ref) {
			match = append(match, c)
		}
	}
	switch len(match) {
	case 0:
		return Record{}, fmt.Errorf("no such container: %s: %w", ref, errdefs.ErrNotFound)
	case 1:
		return decodeRecord(match[0])
	}
	return Record{}, fmt.Errorf("%q matches %d containers: give more of the id: %w", ref, len(match), errdefs.ErrInvalidArgument)
}

func nameFilter(name string) string {
	return fmt.Sprintf("labels.%q==%q", LabelName, name)
}

// Inspect resolves ref; for a container berth did not make, the state
// comes from its task.
func (m *Manager) Inspect(ctx context.Context, ref string) (Record, error) {
	r, err := m.Resolve(ctx, ref)
	if err == nil && !r.Managed {
		r.State = m.foreignState(ctx, r.ID)
	}
	return r, err
}

// get reads container id's record.
func (m *Manager) get(ctx context.Context, id string) (Record, error) {
	c, err := m.o.Containers.Get(ctx, id)
	if err != nil {
		return Record{}, err
	}
	return decodeRecord(c)
}

// saveState writes r's state into its record.
func (m *Manager) saveState(ctx context.Context, r *Record) error {
	a, err := marshalExt(typeState, r.State)
	if err != nil {
		return err
	}
	c := r.Container
	c.Extensions = map[string]typeurlAny{ExtensionState: a}
	updated, err := m.o.Containers.Update(ctx, c, "extensions."+ExtensionState)
	if err != nil {
		return fmt.Errorf("record state of container %s: %w", r.ID, err)
	}
	r.Container = updated
	return nil
}

// List returns the namespace's containers, newest first.
func (m *Manager) List(ctx context.Context) ([]Record, error) {
	all, err := m.o.Containers.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(all))
	for _, c := range all {
		r, err := decodeRecord(c)
		if err != nil {
			return nil, err
		}
		if !r.Managed {
			r.State = m.foreignState(ctx, r.ID)
		}
		out = append(out, r)
	}
	sortNewestFirst(out)
	return out, nil
}

// foreignStateTimeout bounds the shim call foreignState makes.
const foreignStateTimeout = 2 * time.Second

// foreignState is the state of a container berth did not make, read
// from its task.
func (m *Manager) foreignState(ctx context.Context, id string) State {
	// A shim that does not answer must not hold a listing up.
	ctx, cancel := context.WithTimeout(ctx, foreignStateTimeout)
	defer cancel()
	st := State{Status: StatusCreated}
	rt, err := m.runtime()
	if err != nil {
		return st
	}
	t, err := rt.Get(ctx, id)
	if err != nil {
		return st
	}
	ts, err := t.Status(ctx)
	if err != nil {
		return st
	}
	switch ts.Status {
	case "running", "paused":
		st.Status, st.Pid = ts.Status, int(ts.Pid)
	case "stopped":
		st.Status, st.ExitCode, st.FinishedAt = StatusExited, int(ts.Exit.Status), ts.Exit.At
	}
	return st
}

// Rename gives a container a new name.
func (m *Manager) Rename(ctx context.Context, ref, name string) error {
	r, err := m.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	if !r.Managed {
		return fmt.Errorf("container %s was not made by berth and has no name to change: %w", r.ID, errdefs.ErrFailedPrecondition)
	}
	if r.Config.Name == name {
		return fmt.Errorf("container %s is already named %q: %w", r.ID, name, errdefs.ErrInvalidArgument)
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	release, err := m.reserveName(ctx, ns, name, r.ID)
	if err != nil {
		return err
	}
	defer release()
	r.Config.Name = name
	cfg, err := marshalExt(typeConfig, r.Config)
	if err != nil {
		return err
	}
	c := r.Container
	c.Extensions = map[string]typeurlAny{ExtensionConfig: cfg}
	c.Labels = map[string]string{LabelName: name}
	_, err = m.o.Containers.Update(ctx, c, "extensions."+ExtensionConfig, "labels."+LabelName)
	return err
}

// logPath is where container id of ns logs.
func (m *Manager) logPath(ns, id string) string {
	return filepath.Join(m.o.Root, ns, id, id+"-json.log")
}

// stateDir holds container id's FIFOs.
func (m *Manager) stateDir(ns, id string) string {
	return filepath.Join(m.o.State, ns, id)
}
