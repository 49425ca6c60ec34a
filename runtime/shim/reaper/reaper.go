// Package reaper makes the shim the child subreaper of its containers and
// reaps every child it gets, so exit statuses are collected exactly once.
//
// Two kinds of children exist in a shim: commands it runs itself (runc,
// crun, logging binaries), whose callers want their own exit status, and
// container processes that are reparented to the shim when runc exits. A
// single SIGCHLD loop reaps all of them with wait4(-1). To keep a command's
// status from being taken by the loop before its caller asks for it, Start
// registers the command's pid while holding the lock the loop needs to reap,
// so every pid the loop sees is either a registered command (its status goes
// to that command's waiter) or a process somebody else must claim (its
// status goes to the Exits channel).
package reaper

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is the end of one child process.
type Exit struct {
	Pid int
	// Status is the exit code, or 128+signal for a process killed by a
	// signal, as shells and containerd report it.
	Status int
	Time   time.Time
}

// Reaper collects the exit status of every child of the process.
type Reaper struct {
	// mu is held while a command is started and while children are reaped,
	// so a command's pid is registered before its exit can be seen.
	mu      sync.Mutex
	waiters map[int]chan Exit

	// others queues exits of processes that were not started through Start;
	// the queue is unbounded so the SIGCHLD loop never blocks on a slow
	// consumer.
	qmu    sync.Mutex
	queue  []Exit
	notify chan struct{}
	exits  chan Exit
}

// SetSubreaper makes the calling process the subreaper of its descendants:
// orphans below it are reparented to it instead of to init.
func SetSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	return nil
}

// New returns a reaper. Call Run to start reaping.
func New() *Reaper {
	return &Reaper{
		waiters: make(map[int]chan Exit),
		notify:  make(chan struct{}, 1),
		exits:   make(chan Exit),
	}
}

// Exits delivers, in the order they were reaped, the exits of children that
// were not started through Start (container and exec processes).
func (r *Reaper) Exits() <-chan Exit {
	return r.exits
}

// Run reaps children on every SIGCHLD until ctx is done.
func (r *Reaper) Run(ctx context.Context) {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	go r.deliver(ctx)
	// A child may have exited before Notify was installed.
	r.reap()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			r.reap()
		}
	}
}

// reap collects every exited child without blocking.
func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		e := Exit{Pid: pid, Status: exitStatus(ws), Time: time.Now()}
		if w, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			w <- e
			continue
		}
		r.push(e)
	}
}

func (r *Reaper) push(e Exit) {
	r.qmu.Lock()
	r.queue = append(r.queue, e)
	r.qmu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// deliver moves queued exits to the Exits channel in order.
func (r *Reaper) deliver(ctx context.Context) {
	for {
		r.qmu.Lock()
		batch := r.queue
		r.queue = nil
		r.qmu.Unlock()
		for _, e := range batch {
			select {
			case r.exits <- e:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-r.notify:
		case <-ctx.Done():
			return
		}
	}
}

func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Start starts cmd and registers it, so its exit status goes to Wait and
// never to Exits.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan Exit, 1)
	r.waiters[cmd.Process.Pid] = ch
	return ch, nil
}

// Wait waits for a command started with Start and returns its exit. It
// then lets exec.Cmd finish copying the command's output and release its
// resources; exec.Cmd's own wait fails with ECHILD because the child is
// already reaped, so its error carries nothing and is dropped.
func (r *Reaper) Wait(cmd *exec.Cmd, ch <-chan Exit) Exit {
	e := <-ch
	_ = cmd.Wait()
	return e
}

// RunCommand starts cmd and waits for it, returning an *ExitError when its
// status is not zero.
func (r *Reaper) RunCommand(cmd *exec.Cmd) error {
	ch, err := r.Start(cmd)
	if err != nil {
		return err
	}
	if e := r.Wait(cmd, ch); e.Status != 0 {
		return &ExitError{Status: e.Status}
	}
	return nil
}

// ExitError reports a command that ended with a non-zero status.
type ExitError struct {
	Status int
}

func (e *ExitError) Error() string {
	if e.Status > 128 {
		return fmt.Sprintf("killed by signal %d", e.Status-128)
	}
	return fmt.Sprintf("exit status %d", e.Status)
}
