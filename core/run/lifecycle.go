package run

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/core/run/names"
)

// killGrace bounds how long Stop and Remove wait for a SIGKILLed
// container's exit to be recorded.
const killGrace = 30 * time.Second

// resolveManaged resolves ref and refuses records berth did not make.
func (m *Manager) resolveManaged(ctx context.Context, ref string) (string, Record, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", Record{}, err
	}
	r, err := m.Resolve(ctx, ref)
	if err != nil {
		return "", Record{}, err
	}
	if !r.Managed {
		return "", Record{}, fmt.Errorf("container %s was made by another client (ctr?): use 'berth tasks' for it: %w", r.ID, errdefs.ErrFailedPrecondition)
	}
	return ns, r, nil
}

// Start runs a created or stopped container. A user's start clears a
// previous stop's mark and the restart count. Starting a running
// container does nothing.
func (m *Manager) Start(ctx context.Context, ref string) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.run != nil {
		return nil
	}
	e.stopTimer()
	e.backoff = 0
	if r, err = m.get(ctx, r.ID); err != nil {
		return err
	}
	r.State.RestartCount = 0
	return m.startLocked(context.WithoutCancel(ctx), ns, e, &r)
}

// startLocked creates and starts the task of r; e.mu is held. A failure
// is recorded in the state (exit code 127 or 126 when the command cannot
// be found or run, as shells do) and returned.
func (m *Manager) startLocked(ctx context.Context, ns string, e *entry, r *Record) error {
	rt, err := m.runtime()
	if err != nil {
		return err
	}
	spec, err := r.Spec()
	if err != nil {
		return err
	}
	sn := m.o.Snapshotters(r.Snapshotter)
	if sn == nil {
		return fmt.Errorf("container %s: snapshotter %q is not loaded: %w", names.Short(r.ID), r.Snapshotter, errdefs.ErrFailedPrecondition)
	}
	mounts, err := sn.Mounts(ctx, r.SnapshotKey)
	if err != nil {
		return fmt.Errorf("container %s: writable layer: %w", names.Short(r.ID), err)
	}
	o := r.Config.Options
	io := IO{Stdout: LogURI(o.Log), Terminal: o.Tty}
	if o.OpenStdin {
		if io.Stdin, err = m.stdinFIFO(ns, r.ID); err != nil {
			return err
		}
	}
	// A task left from a run whose exit berthd did not see to the end.
	if old, err := rt.Get(ctx, r.ID); err == nil {
		if _, err := old.Delete(ctx); err != nil {
			return fmt.Errorf("container %s: remove the previous run's task: %w", names.Short(r.ID), err)
		}
	}
	netw, err := m.setupNetwork(ctx, ns, r, spec)
	if err != nil {
		return m.startFailed(ctx, r, err)
	}
	rootfs, err := m.prepareRootfs(ctx, ns, r, mounts)
	if err != nil {
		netw.undo()
		return m.startFailed(ctx, r, err)
	}
	task, err := rt.Create(ctx, r.ID, TaskOptions{Runtime: o.Runtime, Spec: spec, Rootfs: rootfs, IO: io})
	if err == nil {
		err = m.networkReady(ctx, r, task, netw)
	}
	if err != nil {
		netw.undo()
		m.releaseRunMounts(ctx, ns, r)
		return m.startFailed(ctx, r, err)
	}
	if err := task.Start(ctx); err != nil {
		if _, derr := task.Delete(ctx); derr != nil {
			slog.Warn("delete task that failed to start", "id", r.ID, "error", derr)
		}
		netw.undo()
		m.releaseRunMounts(ctx, ns, r)
		return m.startFailed(ctx, r, err)
	}
	now := time.Now().UTC()
	run := &runState{task: task, started: now, done: make(chan struct{}), drained: make(chan struct{}), memoryLimited: o.Memory > 0}
	e.run, e.lastRun = run, run
	r.State = State{Status: StatusRunning, Pid: int(task.Pid()), StartedAt: now, FinishedAt: r.State.FinishedAt, RestartCount: r.State.RestartCount}
	if err := m.saveState(ctx, r); err != nil {
		slog.Warn("record running state", "id", r.ID, "error", err)
	}
	e.notifyStarted()
	m.wg.Add(1)
	go m.monitor(ns, r.ID, e, run)
	return nil
}

// startFailed records why a start failed.
func (m *Manager) startFailed(ctx context.Context, r *Record, cause error) error {
	code := StartExitCode(cause)
	if r.State.Status != StatusCreated {
		r.State.Status = StatusExited
	}
	r.State.ExitCode, r.State.Error, r.State.Pid = code, cause.Error(), 0
	r.State.FinishedAt = time.Now().UTC()
	if err := m.saveState(ctx, r); err != nil {
		slog.Warn("record failed start", "id", r.ID, "error", err)
	}
	return fmt.Errorf("start container %s: %w", names.Short(r.ID), cause)
}

// StartExitCode is the exit code docker gives a container whose process
// could not be started: 127 when the command is not found, 126 when it
// cannot be executed, 128 otherwise. It reads the runtime's message.
func StartExitCode(err error) int {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "executable file not found"),
		strings.Contains(msg, "no such file or directory") && strings.Contains(msg, "exec"):
		return 127
	case strings.Contains(msg, "permission denied") && strings.Contains(msg, "exec"),
		strings.Contains(msg, "is a directory"):
		return 126
	}
	return 128
}

// LogURI is the shim's stdout destination for a log config: its JSON log
// file, rotated as configured.
func LogURI(l LogConfig) string {
	q := url.Values{}
	q.Set("format", "json")
	// Followers (attach, logs -f) see prompts without waiting for a
	// newline.
	q.Set("partial", "flush")
	if l.MaxSize > 0 {
		q.Set("max-size", strconv.FormatInt(l.MaxSize, 10))
		q.Set("max-file", strconv.Itoa(max(1, l.MaxFile)))
	}
	return (&url.URL{Scheme: "file", Path: l.Path, RawQuery: q.Encode()}).String()
}

// stopSignal is the signal that stops r: its own, else its image's, else
// SIGTERM.
func stopSignal(r Record) syscall.Signal {
	for _, s := range []string{r.Config.Options.StopSignal, r.Config.ImageStopSignal} {
		if s == "" {
			continue
		}
		if sig, err := oci.ParseSignal(s); err == nil {
			return sig
		}
	}
	return syscall.SIGTERM
}

func (m *Manager) stopTimeout(r Record) time.Duration {
	if t := r.Config.Options.StopTimeout; t != nil && *t >= 0 {
		return time.Duration(*t) * time.Second
	}
	return m.o.StopTimeout
}

// Stop sends the stop signal (signal, else the container's), then SIGKILL
// after timeout (negative: the container's), and returns once the exit is
// recorded. A stopped container is left alone. Restart policies leave a
// stopped container stopped until its next start.
func (m *Manager) Stop(ctx context.Context, ref string, timeout time.Duration, signal string) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	sig := stopSignal(r)
	if signal != "" {
		if sig, err = oci.ParseSignal(signal); err != nil {
			return err
		}
	}
	if timeout < 0 {
		timeout = m.stopTimeout(r)
	}
	run, paused, err := m.markStopped(ctx, ns, r.ID)
	if err != nil || run == nil {
		return err
	}
	return m.stopRun(ctx, run, paused, sig, timeout)
}

// markStopped records a user's stop of container id and returns its run
// (nil when it is not running). A pending restart is cancelled.
func (m *Manager) markStopped(ctx context.Context, ns, id string) (*runState, bool, error) {
	e := m.entry(ns, id)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopTimer()
	r, err := m.get(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if r.State.Status == StatusRestarting {
		r.State.Status = StatusExited
	}
	if !r.State.StoppedByUser || r.State.Status == StatusExited {
		r.State.StoppedByUser = true
		if err := m.saveState(ctx, &r); err != nil {
			return nil, false, err
		}
	}
	return e.run, r.State.Status == StatusPaused, nil
}

// stopRun signals run and waits for its exit, with SIGKILL after timeout.
func (m *Manager) stopRun(ctx context.Context, run *runState, paused bool, sig syscall.Signal, timeout time.Duration) error {
	if sig != syscall.SIGKILL && timeout > 0 {
		if err := run.task.Kill(ctx, sig, false); err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("send stop signal", "signal", sig, "error", err)
		}
		if paused {
			// A frozen process cannot act on the signal.
			if err := run.task.Resume(ctx); err != nil {
				slog.Debug("resume to stop", "error", err)
			}
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-run.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	if err := run.task.Kill(ctx, syscall.SIGKILL, false); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("kill: %w", err)
	}
	if paused {
		_ = run.task.Resume(ctx)
	}
	t := time.NewTimer(killGrace)
	defer t.Stop()
	select {
	case <-run.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("container did not exit %s after SIGKILL: %w", killGrace, errdefs.ErrUnavailable)
	}
}

// Restart stops a running container, then starts it.
func (m *Manager) Restart(ctx context.Context, ref string, timeout time.Duration, signal string) error {
	if err := m.Stop(ctx, ref, timeout, signal); err != nil {
		return err
	}
	return m.Start(ctx, ref)
}

// terminating reports whether sig ends a process that does not handle
// it: a kill with one of these counts as a user's stop for restart
// policies.
func terminating(sig syscall.Signal, stop syscall.Signal) bool {
	switch sig {
	case syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, stop:
		return true
	}
	return false
}

// Kill sends a signal (default SIGKILL) to the container's main process.
func (m *Manager) Kill(ctx context.Context, ref, signal string) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if signal != "" {
		if sig, err = oci.ParseSignal(signal); err != nil {
			return err
		}
	}
	var run *runState
	if terminating(sig, stopSignal(r)) {
		if run, _, err = m.markStopped(ctx, ns, r.ID); err != nil {
			return err
		}
	} else {
		e := m.entry(ns, r.ID)
		e.mu.Lock()
		run = e.run
		e.mu.Unlock()
	}
	if run == nil {
		return fmt.Errorf("container %s is not running: %w", names.Short(r.ID), errdefs.ErrFailedPrecondition)
	}
	return run.task.Kill(ctx, sig, false)
}

// Pause freezes a running container.
func (m *Manager) Pause(ctx context.Context, ref string) error {
	return m.setPaused(ctx, ref, true)
}

// Unpause thaws a paused container.
func (m *Manager) Unpause(ctx context.Context, ref string) error {
	return m.setPaused(ctx, ref, false)
}

func (m *Manager) setPaused(ctx context.Context, ref string, pause bool) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, err = m.get(ctx, r.ID); err != nil {
		return err
	}
	want, from := StatusPaused, StatusRunning
	if !pause {
		want, from = StatusRunning, StatusPaused
	}
	if e.run == nil || r.State.Status != from {
		return fmt.Errorf("container %s is %s, not %s: %w", names.Short(r.ID), r.State.Status, from, errdefs.ErrFailedPrecondition)
	}
	if pause {
		err = e.run.task.Pause(ctx)
	} else {
		err = e.run.task.Resume(ctx)
	}
	if err != nil {
		return err
	}
	r.State.Status = want
	return m.saveState(ctx, &r)
}

// Remove deletes a container that is not running, or with force kills it
// first: its task, record, writable layer, logs and FIFOs. Its volumes
// lose it as a user; with volumes its anonymous volumes that no other
// container uses are removed too (rm -v).
func (m *Manager) Remove(ctx context.Context, ref string, force, volumes bool) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	r, err := m.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	if run := e.run; run != nil {
		if !force {
			e.mu.Unlock()
			return fmt.Errorf("you cannot remove a running container %s: stop it first, or remove it with -f: %w", names.Short(r.ID), errdefs.ErrFailedPrecondition)
		}
		e.mu.Unlock()
		if _, _, err := m.markStopped(ctx, ns, r.ID); err != nil {
			return err
		}
		if err := m.stopRun(ctx, run, r.State.Status == StatusPaused, syscall.SIGKILL, 0); err != nil {
			return err
		}
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	e.stopTimer()
	r, err = m.get(ctx, r.ID)
	if errdefs.IsNotFound(err) {
		return nil // removed at its exit (--rm)
	} else if err != nil {
		return err
	}
	return m.removeLocked(ctx, ns, e, &r, force, volumes)
}

// removeLocked deletes r (with volumes, its anonymous volumes); e.mu is
// held and r is not running.
func (m *Manager) removeLocked(ctx context.Context, ns string, e *entry, r *Record, force, volumes bool) error {
	ctx = context.WithoutCancel(ctx)
	if rt, err := m.runtime(); err == nil {
		if t, err := rt.Get(ctx, r.ID); err == nil {
			if err := m.deleteForeignTask(ctx, r, t, force); err != nil {
				return err
			}
		}
	}
	m.releaseNetwork(ctx, ns, r.ID)
	if err := m.o.Containers.Delete(ctx, r.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", names.Short(r.ID), err)
	}
	m.releaseVolumes(ctx, ns, r, volumes)
	if sn := m.o.Snapshotters(r.Snapshotter); sn != nil && r.SnapshotKey != "" {
		if err := sn.Remove(ctx, r.SnapshotKey); err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("remove writable layer", "id", r.ID, "error", err)
		}
	}
	m.removeFiles(ns, r.ID)
	select {
	case <-e.removed:
	default:
		close(e.removed)
	}
	m.dropEntry(ns, r.ID)
	return nil
}

// deleteForeignTask deletes a task the manager does not run: one left by
// a crash, or one ctr started for its own container.
func (m *Manager) deleteForeignTask(ctx context.Context, r *Record, t Task, force bool) error {
	st, err := t.Status(ctx)
	if err == nil && (st.Status == "running" || st.Status == "paused" || st.Status == "pausing") {
		if !force {
			return fmt.Errorf("you cannot remove a running container %s: stop it first, or remove it with -f: %w", names.Short(r.ID), errdefs.ErrFailedPrecondition)
		}
		if err := t.Kill(ctx, syscall.SIGKILL, true); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, killGrace)
		_, err := t.Wait(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("wait for killed task: %w", err)
		}
	}
	if _, err := t.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete task of container %s: %w", names.Short(r.ID), err)
	}
	return nil
}

// Prune removes every container that is not running and matches filter,
// and returns their ids and the space their writable layers held.
func (m *Manager) Prune(ctx context.Context, filter func(Record) bool) ([]string, int64, error) {
	all, err := m.List(ctx)
	if err != nil {
		return nil, 0, err
	}
	var removed []string
	var space int64
	for _, r := range all {
		if r.State.Running() || r.State.Status == StatusRestarting || (filter != nil && !filter(r)) {
			continue
		}
		size := m.layerSize(ctx, r)
		if err := m.Remove(ctx, r.ID, false, false); err != nil {
			if errdefs.IsFailedPrecondition(err) || errdefs.IsNotFound(err) {
				continue // started or removed meanwhile
			}
			return removed, space, err
		}
		removed = append(removed, r.ID)
		space += size
	}
	return removed, space, nil
}

// layerSize is the disk space of r's writable layer (0 when unknown).
func (m *Manager) layerSize(ctx context.Context, r Record) int64 {
	sn := m.o.Snapshotters(r.Snapshotter)
	if sn == nil || r.SnapshotKey == "" {
		return 0
	}
	u, err := sn.Usage(ctx, r.SnapshotKey)
	if err != nil {
		return 0
	}
	return u.Size
}

// LayerSize is the disk space of r's writable layer.
func (m *Manager) LayerSize(ctx context.Context, r Record) int64 { return m.layerSize(ctx, r) }

// Wait conditions.
const (
	WaitNotRunning = "not-running"
	WaitNextExit   = "next-exit"
	WaitRemoved    = "removed"
)

// Wait blocks until the condition holds and returns the exit code.
func (m *Manager) Wait(ctx context.Context, ref, condition string) (int, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return 0, err
	}
	r, err := m.Resolve(ctx, ref)
	if err != nil {
		return 0, err
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	run, exited, removed := e.run, e.exited, e.removed
	e.mu.Unlock()
	var ch <-chan struct{}
	switch condition {
	case "", WaitNotRunning:
		if run == nil {
			r, err := m.get(ctx, r.ID)
			if err != nil {
				return 0, err
			}
			return r.State.ExitCode, nil
		}
		ch = run.done
	case WaitNextExit:
		ch = exited
	case WaitRemoved:
		ch = removed
	default:
		return 0, fmt.Errorf("wait condition %q: use not-running, next-exit or removed: %w", condition, errdefs.ErrInvalidArgument)
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastCode, nil
}
