package run

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/core/run/logs"
	"github.com/berthd/berth/core/run/names"
)

// LogOptions choose what Logs returns.
type LogOptions struct {
	Follow       bool
	Tail         int64
	Since, Until time.Time
}

// Logs calls fn with the container's log entries; with Follow it keeps
// going until the container's current run ends (at once when it is not
// running).
func (m *Manager) Logs(ctx context.Context, ref string, o LogOptions, fn func(logs.Entry) error) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	ro := logs.Options{Tail: o.Tail, Since: o.Since, Until: o.Until}
	if o.Follow {
		e := m.entry(ns, r.ID)
		e.mu.Lock()
		run := e.run
		e.mu.Unlock()
		done := make(chan struct{})
		if run == nil {
			close(done)
		} else {
			done = run.drained
		}
		ro.Follow, ro.Done = true, done
	}
	return logs.Read(ctx, r.Config.Options.Log.Path, ro, fn)
}

// AttachOptions choose what an attachment carries.
type AttachOptions struct {
	// Stdin forwards input to the container (made with OpenStdin).
	Stdin bool
	// Logs replays what the log holds before live output.
	Logs bool
}

// Attachment connects a client to a container's streams for one run: the
// current one, or the next to start.
type Attachment struct {
	ID  string
	TTY bool

	m   *Manager
	ns  string
	e   *entry
	rec Record
	o   AttachOptions
	// run is the current run at attach time; started fires at the next
	// start when there was none.
	mu      sync.Mutex
	run     *runState
	started <-chan struct{}
	// exited fires at the next exit: the followed run's.
	exited <-chan struct{}
}

// Attach connects to container ref.
func (m *Manager) Attach(ctx context.Context, ref string, o AttachOptions) (*Attachment, error) {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return nil, err
	}
	if o.Stdin && !r.Config.Options.OpenStdin {
		return nil, fmt.Errorf("container %s was not created with -i: its stdin cannot be attached: %w", names.Short(r.ID), errdefs.ErrFailedPrecondition)
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	a := &Attachment{ID: r.ID, TTY: r.Config.Options.Tty, m: m, ns: ns, e: e, rec: r, o: o, run: e.run, started: e.started, exited: e.exited}
	e.mu.Unlock()
	return a, nil
}

// currentRun returns the run the attachment follows, waiting for it to
// start.
func (a *Attachment) currentRun(ctx context.Context) (*runState, error) {
	a.mu.Lock()
	run := a.run
	a.mu.Unlock()
	if run != nil {
		return run, nil
	}
	select {
	case <-a.started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	a.e.mu.Lock()
	run = a.e.lastRun
	a.e.mu.Unlock()
	if run == nil {
		return nil, fmt.Errorf("container %s: no run to attach to: %w", names.Short(a.ID), errdefs.ErrFailedPrecondition)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.run == nil {
		a.run = run
	}
	return a.run, nil
}

// Stream sends the container's output to out from the moment of the
// call (ready is called then) until the run ends, and returns its exit
// code. For an auto-removed container it returns once the container is
// removed.
func (a *Attachment) Stream(ctx context.Context, ready func(), out func(stream string, data []byte) error) (int, error) {
	done := make(chan struct{})
	var run *runState
	var runErr error
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(done)
		run, runErr = a.currentRun(wctx)
		if runErr != nil {
			return
		}
		select {
		case <-run.drained:
		case <-wctx.Done():
		}
	}()
	err := logs.Read(ctx, a.rec.Config.Options.Log.Path, logs.Options{
		Tail: -1, FromEnd: !a.o.Logs, Follow: true, Done: done, Ready: ready,
	}, func(e logs.Entry) error { return out(e.Stream, e.Data) })
	if err != nil {
		return 0, err
	}
	<-done
	if runErr != nil {
		return 0, runErr
	}
	select {
	case <-run.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if a.rec.Config.Options.AutoRemove {
		select {
		case <-a.e.removed:
		case <-a.exited:
			// Restarted instead (policy) or removal failed: report anyway.
		case <-time.After(killGrace):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return run.code, nil
}

// Write sends input to the container.
func (a *Attachment) Write(ctx context.Context, p []byte) error {
	if !a.o.Stdin {
		return fmt.Errorf("attached without stdin: %w", errdefs.ErrFailedPrecondition)
	}
	run, err := a.currentRun(ctx)
	if err != nil {
		return err
	}
	w, err := run.stdinFor(filepath.Join(a.m.stateDir(a.ns, a.ID), "stdin"))
	if err != nil {
		return err
	}
	_, err = w.Write(p)
	return err
}

// CloseStdin reports the end of the client's input: the container's
// stdin is closed when it was created to close with its first client
// (docker run -i).
func (a *Attachment) CloseStdin(ctx context.Context) error {
	if !a.o.Stdin || !a.rec.Config.Options.StdinOnce {
		return nil
	}
	run, err := a.currentRun(ctx)
	if err != nil {
		return err
	}
	return run.endStdin(ctx)
}

// Resize sets the container's terminal size.
func (a *Attachment) Resize(ctx context.Context, width, height uint32) error {
	if !a.TTY {
		return nil
	}
	run, err := a.currentRun(ctx)
	if err != nil {
		return err
	}
	return run.task.ResizePty(ctx, width, height)
}

// Signal sends a signal to the container's main process.
func (a *Attachment) Signal(ctx context.Context, signal string) error {
	sig, err := oci.ParseSignal(signal)
	if err != nil {
		return err
	}
	run, err := a.currentRun(ctx)
	if err != nil {
		return err
	}
	return run.task.Kill(ctx, sig, false)
}
