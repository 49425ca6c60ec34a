package run

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/namespaces"
)

// Restart backoff, as Docker's: the first restart after 100 ms, each
// quick failure doubling the delay up to a minute; a run of at least ten
// seconds resets it.
const (
	backoffInitial = 100 * time.Millisecond
	backoffMax     = time.Minute
	backoffReset   = 10 * time.Second
)

// exitUnknown is the exit code of a container whose task vanished with
// its status (its shim's state was lost, as at a reboot).
const exitUnknown = 255

// monitor waits for run's exit and records it.
func (m *Manager) monitor(ns, id string, e *entry, run *runState) {
	defer m.wg.Done()
	ctx := namespaces.WithNamespace(m.ctx, ns)
	for {
		exit, err := run.task.Wait(ctx)
		if m.ctx.Err() != nil {
			return // berthd stops; the container keeps running
		}
		if err == nil {
			m.handleExit(ns, id, e, run, exit)
			return
		}
		st, serr := run.task.Status(ctx)
		if serr == nil && st.Status != "stopped" {
			// The wait broke but the task lives: wait again.
			slog.Warn("wait for container exit", "id", id, "error", err)
			select {
			case <-time.After(time.Second):
				continue
			case <-m.ctx.Done():
				return
			}
		}
		if serr == nil {
			exit = st.Exit
		} else {
			exit = Exit{Status: exitUnknown, At: time.Now().UTC()}
		}
		m.handleExit(ns, id, e, run, exit)
		return
	}
}

// handleExit records the end of run, deletes its task, and restarts or
// removes the container as its settings say.
func (m *Manager) handleExit(ns, id string, e *entry, run *runState, exit Exit) {
	ctx := namespaces.WithNamespace(context.WithoutCancel(m.ctx), ns)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.run != run {
		return
	}
	e.run = nil
	if run.task != nil && run.memoryLimited && !run.oom {
		// The OOM event and the exit race; the cgroup's kill counter,
		// read before the task (and its cgroup) goes, does not.
		if mt, err := run.task.Metrics(ctx); err == nil && mt.OOMKills > 0 {
			run.oom = true
		}
	}
	if run.task != nil {
		// Deleting the task makes the shim flush the container's output
		// into the log.
		if del, err := run.task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("delete exited task", "id", id, "error", err)
		} else if err == nil && exit.At.IsZero() {
			exit = del
		}
	}
	close(run.drained)
	run.closeStdin()
	if exit.At.IsZero() {
		exit.At = time.Now().UTC()
	}
	code := int(exit.Status)
	run.code = code
	r, err := m.get(ctx, id)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			slog.Warn("record container exit", "id", id, "error", err)
		}
		m.releaseNetwork(ctx, ns, id)
		close(run.done)
		e.notifyExited(code)
		return
	}
	r.State.Status, r.State.Pid, r.State.ExitCode, r.State.FinishedAt = StatusExited, 0, code, exit.At.UTC()
	r.State.OOMKilled = run.oom
	restart, delay := m.shouldRestart(e, &r, run.started)
	if restart {
		r.State.Status = StatusRestarting
		r.State.RestartCount++
		m.scheduleRestart(ns, id, e, delay)
	}
	autoRemove := r.Config.Options.AutoRemove && !restart
	// An auto-removed container's state is not written: its record goes.
	if !autoRemove {
		if err := m.saveState(ctx, &r); err != nil {
			slog.Warn("record container exit", "id", id, "error", err)
		}
	}
	// After the state is written (a follower of the log sees the exit
	// recorded), before waiters return (a stopped container's ports are
	// free for the next one).
	m.releaseNetwork(ctx, ns, id)
	m.releaseRunMounts(ctx, ns, &r)
	close(run.done)
	if autoRemove {
		if err := m.removeLocked(ctx, ns, e, &r, true, true); err != nil {
			slog.Warn("remove container at exit (--rm)", "id", id, "error", err)
			if err := m.saveState(ctx, &r); err != nil {
				slog.Warn("record container exit", "id", id, "error", err)
			}
		}
	}
	e.notifyExited(code)
}

// shouldRestart applies r's restart policy to the exit in r.State and
// returns the delay before the restart.
func (m *Manager) shouldRestart(e *entry, r *Record, started time.Time) (bool, time.Duration) {
	p, st := r.Config.Options.RestartPolicy, r.State
	yes := false
	switch p.Name {
	case RestartAlways, RestartUnlessStopped:
		yes = !st.StoppedByUser
	case RestartOnFailure:
		yes = !st.StoppedByUser && st.ExitCode != 0 && (p.MaximumRetryCount == 0 || st.RestartCount < p.MaximumRetryCount)
	}
	if !yes || m.ctx.Err() != nil {
		e.backoff = 0
		return false, 0
	}
	if e.backoff == 0 || time.Since(started) >= backoffReset {
		e.backoff = backoffInitial
	} else {
		e.backoff = min(e.backoff*2, backoffMax)
	}
	return true, e.backoff
}

// scheduleRestart starts container id after delay; e.mu is held.
func (m *Manager) scheduleRestart(ns, id string, e *entry, delay time.Duration) {
	e.stopTimer()
	e.timer = time.AfterFunc(delay, func() { m.restartNow(ns, id, e) })
}

// restartNow starts a container its restart policy brings back.
func (m *Manager) restartNow(ns, id string, e *entry) {
	if m.ctx.Err() != nil {
		return
	}
	ctx := namespaces.WithNamespace(context.WithoutCancel(m.ctx), ns)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.timer = nil
	if e.run != nil {
		return
	}
	r, err := m.get(ctx, id)
	if err != nil || r.State.Status != StatusRestarting {
		return
	}
	started := time.Now()
	err = m.startLocked(ctx, ns, e, &r)
	if err == nil {
		return
	}
	slog.Warn("restart container", "id", id, "error", err)
	// A failed start counts as a failed run: the policy decides again.
	if r, err = m.get(ctx, id); err != nil {
		return
	}
	if restart, delay := m.shouldRestart(e, &r, started); restart {
		r.State.Status = StatusRestarting
		r.State.RestartCount++
		m.scheduleRestart(ns, id, e, delay)
	} else {
		r.State.Status = StatusExited
	}
	if err := m.saveState(ctx, &r); err != nil {
		slog.Warn("record restart", "id", id, "error", err)
	}
}

// Reconcile brings berthd's view in line with the tasks after a start:
// running containers get their monitor back (and those whose task ended
// meanwhile have their exit recorded and their policy applied), pending
// restarts are rescheduled, exited auto-remove containers are removed,
// and containers with restart policy always, or unless-stopped without a
// user's stop, that are not running are started, as Docker does when its
// daemon starts. Reconcile itself only reads records and looks tasks up:
// whatever talks to shims (waits, starts, removals) runs in the
// background, so a shim that does not answer cannot hold berthd's start.
func (m *Manager) Reconcile(ctx context.Context, namespaceList []string) error {
	rt, err := m.runtime()
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range namespaceList {
		nctx := namespaces.WithNamespace(ctx, ns)
		all, err := m.o.Containers.List(nctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range all {
			r, err := decodeRecord(c)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if r.Managed {
				m.reconcileOne(nctx, rt, ns, r)
			}
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) reconcileOne(ctx context.Context, rt Runtime, ns string, r Record) {
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.run != nil {
		return
	}
	policy := r.Config.Options.RestartPolicy.Name
	switch {
	case r.State.Running():
		task, err := rt.Get(ctx, r.ID)
		if err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("reconcile container", "id", r.ID, "error", err)
			return
		}
		run := &runState{task: task, started: r.State.StartedAt, done: make(chan struct{}), drained: make(chan struct{}), memoryLimited: r.Config.Options.Memory > 0}
		e.run, e.lastRun = run, run
		m.wg.Add(1)
		if task == nil {
			// The task and its status are gone (a reboot): an unknown end.
			go func() {
				defer m.wg.Done()
				m.handleExit(ns, r.ID, e, run, Exit{Status: exitUnknown, At: time.Now().UTC()})
			}()
			return
		}
		go m.monitor(ns, r.ID, e, run)
	case r.State.Status == StatusRestarting:
		m.scheduleRestart(ns, r.ID, e, 0)
	case r.State.Status == StatusExited && r.Config.Options.AutoRemove:
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := m.Remove(namespaces.WithNamespace(m.ctx, ns), r.ID, true, true); err != nil && !errdefs.IsNotFound(err) {
				slog.Warn("remove exited container (--rm)", "id", r.ID, "error", err)
			}
		}()
	case r.State.Status == StatusExited && (policy == RestartAlways || policy == RestartUnlessStopped && !r.State.StoppedByUser):
		r.State.Status, r.State.StoppedByUser = StatusRestarting, false
		if err := m.saveState(ctx, &r); err != nil {
			slog.Warn("reconcile container", "id", r.ID, "error", err)
			return
		}
		m.scheduleRestart(ns, r.ID, e, 0)
	}
}
