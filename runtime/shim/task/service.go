// Package task implements the shim's ttrpc task service
// (containerd.task.v2.Task) on top of an OCI runtime binary.
//
// Ordering and exactly-once exits rest on one lock, lifecycle: every call
// that changes a process's runtime state (create, start, exec start, delete,
// pause, resume) holds it across the runtime call, and the reaper's exits
// are handled under it too. So when an exit is handled, the process it
// belongs to is registered, and its start event is already published. A
// process's exit is recorded once (reaped) and published once; init's exit
// is held back until the exits of its running execs are out.
package task

import (
	"context"
	"log/slog"
	"sync"

	"github.com/containerd/containerd/api/events"
	"google.golang.org/protobuf/proto"

	"github.com/berthd/berth/runtime/shim/reaper"
)

// Event topics, as containerd names them.
const (
	TopicCreate      = "/tasks/create"
	TopicStart       = "/tasks/start"
	TopicExit        = "/tasks/exit"
	TopicDelete      = "/tasks/delete"
	TopicOOM         = "/tasks/oom"
	TopicExecAdded   = "/tasks/exec-added"
	TopicExecStarted = "/tasks/exec-started"
	TopicPaused      = "/tasks/paused"
	TopicResumed     = "/tasks/resumed"
)

// Publisher takes events for the daemon; it must not block.
type Publisher interface {
	Publish(topic string, event proto.Message)
}

// Config is what a Service needs from the shim.
type Config struct {
	// Namespace is the containerd namespace the shim serves.
	Namespace string
	// RuntimeRoot is the runtime state root used when a container's options
	// name none; the namespace is appended to it.
	RuntimeRoot string
	Publisher   Publisher
	// Reaper must be running; the service claims the exits it delivers.
	Reaper *reaper.Reaper
	// Shutdown is called (once, in its own goroutine) when the Shutdown
	// call finds no containers left.
	Shutdown func()
}

// Service serves containerd.task.v2.Task for the containers of one shim.
type Service struct {
	cfg Config
	ctx context.Context

	lifecycle sync.Mutex
	// mu guards the maps and the fields of containers and processes; it is
	// held briefly and never while waiting for the runtime.
	mu         sync.Mutex
	containers map[string]*container
	byPid      map[int][]*process
	shutdown   sync.Once

	// deleting holds, by container id, the runtime deletes still running
	// after their Delete answered; a new container of that id and the
	// shim's exit wait for them.
	deleting map[string]chan struct{}
	deletes  sync.WaitGroup
}

// New returns a service and starts handling the reaper's exits until ctx
// ends.
func New(ctx context.Context, cfg Config) *Service {
	s := &Service{
		cfg:        cfg,
		ctx:        ctx,
		containers: map[string]*container{},
		byPid:      map[int][]*process{},
		deleting:   map[string]chan struct{}{},
	}
	go s.handleExits()
	return s
}

func (s *Service) publish(topic string, ev proto.Message) {
	s.cfg.Publisher.Publish(topic, ev)
}

func logger(p *process) *slog.Logger {
	if p.execID == "" {
		return slog.With("id", p.c.id)
	}
	return slog.With("id", p.c.id, "exec", p.execID)
}

func (s *Service) handleExits() {
	exits := s.cfg.Reaper.Exits()
	for {
		select {
		case <-s.ctx.Done():
			return
		case e := <-exits:
			s.lifecycle.Lock()
			s.handleExit(e)
			s.lifecycle.Unlock()
		}
	}
}

// handleExit records an exit for the process with its pid. Exits of pids
// the shim does not track (orphans reparented to it) only needed reaping.
func (s *Service) handleExit(e reaper.Exit) {
	s.mu.Lock()
	procs := s.byPid[e.Pid]
	delete(s.byPid, e.Pid)
	for _, p := range procs {
		p.reaped, p.status, p.exitedAt = true, e.Status, e.Time
	}
	s.mu.Unlock()
	for _, p := range procs {
		logger(p).Debug("process exited", "pid", e.Pid, "status", e.Status)
		if p.execID == "" {
			s.initExited(p)
		} else {
			s.execExited(p)
		}
	}
}

func (s *Service) initExited(p *process) {
	c := p.c
	ctx := context.Background()
	if p.state == paused {
		// Frozen processes cannot die; thaw them so the kill below and the
		// kernel's pid namespace teardown take effect.
		if err := c.rt.Resume(ctx, c.id); err != nil {
			logger(p).Warn("resume exited container", "error", err)
		}
	}
	if c.killAll {
		if err := c.rt.Kill(ctx, c.id, 9, true); err != nil {
			logger(p).Debug("kill remaining processes", "error", err)
		}
	}
	if c.runningExecs == 0 {
		s.publishExit(p)
	}
}

func (s *Service) execExited(p *process) {
	c := p.c
	s.publishExit(p)
	c.runningExecs--
	if c.runningExecs == 0 && c.init.reaped && !exitPublished(c.init) {
		s.publishExit(c.init)
	}
}

func exitPublished(p *process) bool {
	return p.state == stopped || p.state == deleted
}

// publishExit marks p stopped, releases its waiters and publishes its exit.
func (s *Service) publishExit(p *process) {
	s.mu.Lock()
	p.setExited(p.status, p.exitedAt)
	s.mu.Unlock()
	s.publish(TopicExit, &events.TaskExit{
		ContainerID: p.c.id,
		ID:          p.id(),
		Pid:         uint32(p.pid),
		ExitStatus:  uint32(p.status),
		ExitedAt:    timestamp(p.exitedAt),
	})
}
