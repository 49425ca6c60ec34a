package v2

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/runtime/shim/spare"
)

// spareTimeout bounds the adoption of a spare shim.
const spareTimeout = 5 * time.Second

// spares keeps one spare shim of berth's own shim binary started ahead of
// need (see package runtime/shim/spare), so a task create runs no shim
// start command. The spare taken is replaced in the background.
type spares struct {
	binary string
	cmd    func() *exec.Cmd

	mu      sync.Mutex
	ready   *spare.Shim
	filling bool
	closed  bool
}

func newSpares(binary string, cmd func() *exec.Cmd) *spares {
	s := &spares{binary: binary, cmd: cmd}
	s.fill()
	return s
}

// fill starts a spare in the background unless one is ready or starting.
func (s *spares) fill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ready != nil || s.filling {
		return
	}
	s.filling = true
	go func() {
		sh, err := spare.Start(s.cmd())
		if err != nil {
			slog.Warn("start a spare shim", "binary", s.binary, "error", err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.filling = false
		if sh == nil {
			return
		}
		if s.closed {
			sh.Close()
			return
		}
		s.ready = sh
	}()
}

// take returns the ready spare for binary, if any, and starts the next.
func (s *spares) take(binary string) *spare.Shim {
	if s == nil || binary != s.binary {
		return nil
	}
	s.mu.Lock()
	sh := s.ready
	s.ready = nil
	s.mu.Unlock()
	s.fill()
	return sh
}

// close dismisses the ready spare and starts no other.
func (s *spares) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.ready != nil {
		s.ready.Close()
		s.ready = nil
	}
}

// spareCommand is the command of a spare: berth's shim with the daemon's
// addresses and environment, as shimCommand gives, but no container yet.
func (m *Manager) spareCommand(binary string) func() *exec.Cmd {
	return func() *exec.Cmd {
		args := spare.Args(m.opts.Address, m.self)
		if m.opts.ShimDebug {
			args = append(args, "-debug")
		}
		cmd := exec.Command(binary, append(args, spare.Action)...)
		cmd.Dir = m.opts.State
		// No NAMESPACE: the spare learns its namespace when adopted.
		cmd.Env = m.shimEnv()
		return cmd
	}
}

// adoptSpare makes a spare the shim of t and returns its address; "" when
// there is no spare for t's binary or it could not be used, and the shim
// is to be started with its start command.
func (m *Manager) adoptSpare(ctx context.Context, t *Task, shimOpts *anypb.Any) string {
	sh := m.spares.take(t.binary)
	if sh == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), spareTimeout)
	defer cancel()
	address, err := sh.Adopt(ctx, spare.Request{
		Namespace: t.namespace, ID: t.id, Bundle: t.bundle.path, ShimCgroup: shimCgroup(shimOpts),
	})
	if err != nil {
		if !errors.Is(err, spare.ErrInUse) {
			slog.Warn("spare shim not usable; starting one", "namespace", t.namespace, "id", t.id, "error", err)
		}
		return ""
	}
	return strings.TrimPrefix(address, "unix://")
}

// shimCgroup is the shim cgroup runc options name, if any.
func shimCgroup(a *anypb.Any) string {
	if a == nil || strings.TrimPrefix(a.TypeUrl, "type.googleapis.com/") != runcOptionsType {
		return ""
	}
	var o options.Options
	if proto.Unmarshal(a.Value, &o) != nil {
		return ""
	}
	return o.ShimCgroup
}
