package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(attachCommand(g))
	})
}

func attachCommand(g *globals) *cobra.Command {
	var noStdin, sigProxy bool
	cmd := &cobra.Command{
		Use:     "attach [flags] CONTAINER",
		Short:   "attach to a running container's input and output",
		GroupID: "containers",
		Args:    exactArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			info, err := inspectContainer(ctx, c, args[0])
			if err != nil {
				return err
			}
			if !info.State.GetRunning() {
				return fmt.Errorf("container %s is not running: start it with 'berth start -a'", args[0])
			}
			s, err := openAttach(ctx, c, info.Id, streamOptions{
				stdin: !noStdin && info.Config.GetOpenStdin(), tty: info.Config.GetTty(), sigProxy: sigProxy,
			}, g)
			if err != nil {
				return err
			}
			code, err := s.run(ctx)
			if err != nil {
				return err
			}
			return containerExit(code)
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "do not attach stdin")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "forward signals to the container (without a terminal)")
	return cmd
}

// containerExit turns a container's exit code into the command's result.
func containerExit(code int) error {
	if code == 0 {
		return nil
	}
	return &ExitError{Code: code}
}

// streamOptions describe how a client connects to a process's streams.
type streamOptions struct {
	stdin    bool
	tty      bool
	sigProxy bool
}

// procStream is a client's side of an Attach or Exec stream.
type procStream struct {
	o      streamOptions
	g      *globals
	send   func(*streamInput) error
	recv   func() (*containersapi.StreamResponse, error)
	close  func()
	sendMu sync.Mutex
	// detached closes when the user typed the detach keys.
	detached chan struct{}
}

// streamInput is what the client sends after the first message.
type streamInput struct {
	stdin      []byte
	closeStdin bool
	resize     *containersapi.Resize
	signal     string
}

// openAttach attaches to container id and waits until berthd says it is
// attached: output from then on reaches the client.
func openAttach(ctx context.Context, c *Client, id string, o streamOptions, g *globals) (*procStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := containersapi.NewContainersClient(c.Conn()).Attach(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	open := &containersapi.AttachRequest{Msg: &containersapi.AttachRequest_Open{Open: &containersapi.AttachOpen{Id: id, Stdin: o.stdin}}}
	if err := st.Send(open); err != nil {
		cancel()
		return nil, err
	}
	s := &procStream{o: o, g: g, recv: st.Recv, close: cancel, detached: make(chan struct{})}
	s.send = func(in *streamInput) error {
		var m containersapi.AttachRequest
		switch {
		case in.stdin != nil:
			m.Msg = &containersapi.AttachRequest_Stdin{Stdin: in.stdin}
		case in.closeStdin:
			m.Msg = &containersapi.AttachRequest_CloseStdin{CloseStdin: true}
		case in.resize != nil:
			m.Msg = &containersapi.AttachRequest_Resize{Resize: in.resize}
		case in.signal != "":
			m.Msg = &containersapi.AttachRequest_Signal{Signal: in.signal}
		}
		return st.Send(&m)
	}
	if err := s.waitAttached(); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// openExec starts a process in container id.
func openExec(ctx context.Context, c *Client, open *containersapi.ExecOpen, o streamOptions, g *globals) (*procStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := containersapi.NewContainersClient(c.Conn()).Exec(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := st.Send(&containersapi.ExecRequest{Msg: &containersapi.ExecRequest_Open{Open: open}}); err != nil {
		cancel()
		return nil, err
	}
	s := &procStream{o: o, g: g, recv: st.Recv, close: cancel, detached: make(chan struct{})}
	s.send = func(in *streamInput) error {
		var m containersapi.ExecRequest
		switch {
		case in.stdin != nil:
			m.Msg = &containersapi.ExecRequest_Stdin{Stdin: in.stdin}
		case in.closeStdin:
			m.Msg = &containersapi.ExecRequest_CloseStdin{CloseStdin: true}
		case in.resize != nil:
			m.Msg = &containersapi.ExecRequest_Resize{Resize: in.resize}
		case in.signal != "":
			m.Msg = &containersapi.ExecRequest_Signal{Signal: in.signal}
		}
		return st.Send(&m)
	}
	return s, nil
}

// errDetached ends a session the user detached from (the process runs
// on).
var errDetached = errors.New("detached")

// errNotStarted carries the exit code of a process that could not start.
type errNotStarted struct {
	code int
	msg  string
}

func (e *errNotStarted) Error() string { return e.msg }

// waitAttached reads the first response.
func (s *procStream) waitAttached() error {
	m, err := s.recv()
	if err != nil {
		return err
	}
	if ex := m.GetExit(); ex != nil {
		return &errNotStarted{code: int(ex.Code), msg: ex.Error}
	}
	if m.GetAttached() == nil {
		return fmt.Errorf("berthd answered the attach with an unexpected message")
	}
	return nil
}

func (s *procStream) sendInput(in *streamInput) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.send(in)
}

// run connects the terminal: input (raw when a terminal), window size,
// signals, and output until the process exits; it returns the exit code.
func (s *procStream) run(ctx context.Context) (int, error) {
	defer s.close()
	restore := func() {}
	if s.o.tty && s.o.stdin {
		r, err := rawTerminal(s.g.stdin)
		if err != nil {
			return 0, err
		}
		restore = r
	}
	defer restore()
	if s.o.tty {
		s.watchResize(ctx)
	}
	if !s.o.tty && s.o.sigProxy {
		s.proxySignals(ctx)
	}
	if s.o.stdin {
		go s.copyStdin()
	}
	code, err := s.copyOutput()
	if errors.Is(err, errDetached) {
		restore()
		fmt.Fprintln(s.g.stderr, "\r\nberth: detached (Ctrl-P Ctrl-Q); the process runs on")
		return 0, nil
	}
	return code, err
}

// Detach keys, as docker's: Ctrl-P then Ctrl-Q leaves a terminal
// session with the container running.
const (
	ctrlP = 0x10
	ctrlQ = 0x11
)

// copyStdin sends the user's input until it ends, or until the detach
// keys on a terminal.
func (s *procStream) copyStdin() {
	buf := make([]byte, 32<<10)
	heldP := false // a Ctrl-P ended the last read: is a Ctrl-Q next?
	for {
		n, err := s.g.stdin.Read(buf)
		data := buf[:n]
		if s.o.tty && n > 0 {
			var detach bool
			data, heldP, detach = scanDetach(data, heldP)
			if detach {
				if len(data) > 0 {
					_ = s.sendInput(&streamInput{stdin: data})
				}
				close(s.detached)
				s.close()
				return
			}
		}
		if len(data) > 0 {
			if s.sendInput(&streamInput{stdin: data}) != nil {
				return
			}
		}
		if err != nil {
			_ = s.sendInput(&streamInput{closeStdin: true})
			return
		}
	}
}

// scanDetach looks for Ctrl-P Ctrl-Q in data (heldP: a Ctrl-P ended the
// previous chunk and was held back). It returns what to send, whether a
// trailing Ctrl-P is held back, and whether to detach.
func scanDetach(data []byte, heldP bool) (out []byte, hold, detach bool) {
	out = make([]byte, 0, len(data)+1)
	for _, b := range data {
		switch {
		case heldP && b == ctrlQ:
			return out, false, true
		case heldP:
			out = append(out, ctrlP)
			heldP = false
		}
		if b == ctrlP {
			heldP = true
			continue
		}
		out = append(out, b)
	}
	return out, heldP, false
}

// copyOutput writes the output until the exit message.
func (s *procStream) copyOutput() (int, error) {
	for {
		m, err := s.recv()
		if err != nil {
			select {
			case <-s.detached:
				return 0, errDetached
			default:
			}
			if errors.Is(err, io.EOF) {
				return 0, fmt.Errorf("berthd ended the stream without an exit status")
			}
			return 0, err
		}
		switch {
		case m.GetOutput() != nil:
			w := s.g.stdout
			if m.GetOutput().Stream == "stderr" {
				w = s.g.stderr
			}
			if _, err := w.Write(m.GetOutput().Data); err != nil {
				return 0, err
			}
		case m.GetExit() != nil:
			ex := m.GetExit()
			if ex.Error != "" {
				return int(ex.Code), &errNotStarted{code: int(ex.Code), msg: ex.Error}
			}
			return int(ex.Code), nil
		}
	}
}

// watchResize sends the terminal's size now and at every SIGWINCH.
func (s *procStream) watchResize(ctx context.Context) {
	f, ok := s.g.stdout.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return
	}
	send := func() {
		if w, h, err := term.GetSize(int(f.Fd())); err == nil {
			_ = s.sendInput(&streamInput{resize: &containersapi.Resize{Width: uint32(w), Height: uint32(h)}})
		}
	}
	send()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGWINCH)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ch:
				send()
			case <-ctx.Done():
				return
			}
		}
	}()
}

// proxySignals forwards the signals a user sends to the foreground
// process (Ctrl-C is SIGINT) to the container.
func (s *procStream) proxySignals(ctx context.Context) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case sig := <-ch:
				_ = s.sendInput(&streamInput{signal: unix.SignalName(sig.(unix.Signal))})
			case <-ctx.Done():
				return
			}
		}
	}()
}

// rawTerminal puts in, a terminal, in raw mode and returns the undo.
func rawTerminal(in io.Reader) (func(), error) {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, usageError("the input device is not a TTY: drop -t, or run berth from a terminal")
	}
	state, err := term.MakeRaw(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("raw terminal mode: %w", err)
	}
	return func() { term.Restore(int(f.Fd()), state) }, nil
}
