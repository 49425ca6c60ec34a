package run

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/core/run/names"
)

// StartError is a process that could not be started, with the exit code
// docker gives it (126, 127 or 128: see StartExitCode).
type StartError struct {
	Code int
	Err  error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	Args       []string
	Env        []string
	WorkingDir string
	User       string
	Tty        bool
	Stdin      bool
	Privileged bool
	Detach     bool
}

// ExecSession is one exec'd process and its streams.
type ExecSession struct {
	ID  string
	TTY bool

	m      *Manager
	proc   Process
	paths  []string
	stdin  *stdinWriter
	stdout io.ReadCloser
	stderr io.ReadCloser
	once   sync.Once
}

// Exec starts a process in container ref. A process that cannot be
// started is a *StartError.
func (m *Manager) Exec(ctx context.Context, ref string, o ExecOptions) (*ExecSession, error) {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(o.Args) == 0 {
		return nil, fmt.Errorf("exec needs a command: %w", errdefs.ErrInvalidArgument)
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	run := e.run
	e.mu.Unlock()
	if r, err = m.get(ctx, r.ID); err != nil {
		return nil, err
	}
	switch {
	case run == nil:
		return nil, fmt.Errorf("container %s is not running: %w", names.Short(r.ID), errdefs.ErrFailedPrecondition)
	case r.State.Status == StatusPaused:
		return nil, fmt.Errorf("container %s is paused: unpause it first: %w", names.Short(r.ID), errdefs.ErrFailedPrecondition)
	}
	spec, err := r.Spec()
	if err != nil {
		return nil, err
	}
	proc, err := execProcess(spec, o, int(run.task.Pid()))
	if err != nil {
		return nil, err
	}
	s := &ExecSession{ID: "exec-" + randomHex(6), TTY: o.Tty, m: m}
	io, err := s.openIO(m.stateDir(ns, r.ID), o)
	if err != nil {
		s.cleanup()
		return nil, err
	}
	// The session outlives the request when the client goes away.
	bctx := namespaces.WithNamespace(context.WithoutCancel(ctx), ns)
	p, err := run.task.Exec(bctx, s.ID, proc, io)
	if err != nil {
		s.cleanup()
		return nil, execError(err)
	}
	s.proc = p
	if o.Stdin {
		if s.stdin, err = openStdin(io.Stdin); err != nil {
			s.finish(bctx)
			return nil, err
		}
	}
	if err := p.Start(bctx); err != nil {
		s.finish(bctx)
		return nil, execError(err)
	}
	if o.Detach {
		go func() {
			s.drain(bctx, func(string, []byte) error { return nil })
		}()
	}
	return s, nil
}

func execError(err error) error {
	return &StartError{Code: StartExitCode(err), Err: err}
}

// execProcess builds the exec'd process from the container's.
func execProcess(spec *specs.Spec, o ExecOptions, pid int) (*specs.Process, error) {
	if spec.Process == nil {
		return nil, fmt.Errorf("container spec has no process: %w", errdefs.ErrFailedPrecondition)
	}
	p := *spec.Process
	p.Args = o.Args
	p.Terminal = o.Tty
	p.ConsoleSize = nil
	env, err := oci.MergeEnv(p.Env, o.Env)
	if err != nil {
		return nil, err
	}
	p.Env = env
	if o.Tty && !hasKey(p.Env, "TERM") {
		p.Env = append(p.Env, "TERM=xterm")
	}
	if o.WorkingDir != "" {
		if !filepath.IsAbs(o.WorkingDir) {
			return nil, fmt.Errorf("working directory %q is not absolute: %w", o.WorkingDir, errdefs.ErrInvalidArgument)
		}
		p.Cwd = o.WorkingDir
	}
	if o.User != "" {
		// The container's own files, through its root as its init sees it.
		u, err := oci.ResolveUser("/proc/"+strconv.Itoa(pid)+"/root", o.User)
		if err != nil {
			return nil, err
		}
		p.User = u
	}
	if o.Privileged {
		all := oci.KnownCapabilities()
		p.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
	}
	return &p, nil
}

func hasKey(env []string, k string) bool {
	for _, e := range env {
		if len(e) > len(k) && e[:len(k)] == k && e[len(k)] == '=' {
			return true
		}
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("read random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}

// openIO makes the session's FIFOs in dir and opens berthd's read ends.
func (s *ExecSession) openIO(dir string, o ExecOptions) (IO, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return IO{}, err
	}
	io := IO{Terminal: o.Tty}
	mk := func(stream string) (string, error) {
		p := filepath.Join(dir, s.ID+"-"+stream)
		s.paths = append(s.paths, p)
		return p, mkfifo(p)
	}
	var err error
	if o.Stdin {
		if io.Stdin, err = mk("stdin"); err != nil {
			return io, err
		}
	}
	if o.Detach {
		return io, nil
	}
	if io.Stdout, err = mk("stdout"); err != nil {
		return io, err
	}
	// The open completes in the background once the shim opens its end;
	// it is not tied to the request, which may end first.
	if s.stdout, err = fifo.OpenFifo(context.Background(), io.Stdout, syscall.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
		return io, err
	}
	if o.Tty {
		return io, nil
	}
	if io.Stderr, err = mk("stderr"); err != nil {
		return io, err
	}
	s.stderr, err = fifo.OpenFifo(context.Background(), io.Stderr, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	return io, err
}

// Write sends input to the process.
func (s *ExecSession) Write(p []byte) error {
	if s.stdin == nil {
		return fmt.Errorf("exec without stdin: %w", errdefs.ErrFailedPrecondition)
	}
	_, err := s.stdin.Write(p)
	return err
}

// CloseStdin ends the process's input.
func (s *ExecSession) CloseStdin(ctx context.Context) error {
	if s.stdin == nil {
		return nil
	}
	s.stdin.Close()
	return s.proc.CloseIO(ctx)
}

// Resize sets the process's terminal size.
func (s *ExecSession) Resize(ctx context.Context, width, height uint32) error {
	if !s.TTY {
		return nil
	}
	return s.proc.ResizePty(ctx, width, height)
}

// Signal sends a signal to the process.
func (s *ExecSession) Signal(ctx context.Context, signal string) error {
	sig, err := oci.ParseSignal(signal)
	if err != nil {
		return err
	}
	return s.proc.Kill(ctx, sig, false)
}

// Stream copies the process's output to out until it exits, and returns
// its exit code. If ctx ends first, the output is drained in the
// background (so the process does not block on a full pipe) and the
// process is deleted once it exits.
func (s *ExecSession) Stream(ctx context.Context, out func(stream string, data []byte) error) (int, error) {
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	var mu sync.Mutex
	stopped := false
	send := func(stream string, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return nil
		}
		if err := out(stream, data); err != nil {
			stopped = true
		}
		return nil
	}
	bctx := context.WithoutCancel(ctx)
	go func() {
		code, err := s.drain(bctx, send)
		res <- result{code, err}
	}()
	select {
	case r := <-res:
		return r.code, r.err
	case <-ctx.Done():
		mu.Lock()
		stopped = true
		mu.Unlock()
		return 0, ctx.Err()
	}
}

// drain copies the outputs to out, waits for the exit and deletes the
// process.
func (s *ExecSession) drain(ctx context.Context, out func(string, []byte) error) (int, error) {
	var wg sync.WaitGroup
	for _, st := range []struct {
		name string
		r    io.Reader
	}{{"stdout", s.stdout}, {"stderr", s.stderr}} {
		if st.r == nil {
			continue
		}
		wg.Add(1)
		go func(name string, r io.Reader) {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := r.Read(buf)
				if n > 0 {
					_ = out(name, append([]byte(nil), buf[:n]...))
				}
				if err != nil {
					return
				}
			}
		}(st.name, st.r)
	}
	exit, err := s.proc.Wait(ctx)
	wg.Wait()
	s.finish(ctx)
	if err != nil {
		return 0, fmt.Errorf("wait for exec %s: %w", s.ID, err)
	}
	return int(exit.Status), nil
}

// finish deletes the process and the session's FIFOs.
func (s *ExecSession) finish(ctx context.Context) {
	s.once.Do(func() {
		if s.proc != nil {
			if _, err := s.proc.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
				slog.Warn("delete exec process", "exec", s.ID, "error", err)
			}
		}
		s.cleanup()
	})
}

func (s *ExecSession) cleanup() {
	for _, c := range []io.Closer{s.stdout, s.stderr} {
		if c != nil {
			c.Close()
		}
	}
	if s.stdin != nil {
		s.stdin.Close()
	}
	for _, p := range s.paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Warn("remove exec FIFO", "path", p, "error", err)
		}
	}
}
