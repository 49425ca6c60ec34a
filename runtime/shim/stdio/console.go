package stdio

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime/shim/runc"
)

// NewConsole connects the pty master of a process with a terminal: the
// client's stdin goes into it and everything the process writes comes out of
// it as stdout (a pty merges stdout and stderr). master must be
// non-blocking, so its copies wait in Go's poller rather than on threads.
func NewConsole(ctx context.Context, master *os.File, cfg Config, env Env) (_ *ProcessIO, err error) {
	p := &ProcessIO{console: master}
	p.closers = append(p.closers, master)
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	out, err := parseOutput(cfg.Stdout)
	if err != nil {
		return nil, err
	}
	var w io.WriteCloser
	switch {
	case out.kind == kindBinary:
		if err := p.startLogger(ctx, out, cfg, env); err != nil {
			return nil, err
		}
		// The console's output feeds the logger's stdout pipe, which the
		// copy closes at its end; the stderr pipe stays silent.
		w = p.runtime.Stdout
		p.runtime.Stderr.Close()
		p.childEnds = nil
		p.runtime = runc.IO{}
	case out.kind == kindFIFO && cfg.Stdout == "":
		w = nil
	default:
		if w, err = out.open(ctx, "stdout"); err != nil {
			return nil, err
		}
	}
	if w != nil {
		p.copyOut(w, nopCloser{master})
	}
	if cfg.Stdin != "" {
		if err := p.copyStdin(ctx, cfg.Stdin, nopWriteCloser{master}); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Resize sets the terminal's window size.
func (p *ProcessIO) Resize(width, height uint32) error {
	if p.console == nil {
		return nil
	}
	if width > 0xffff || height > 0xffff {
		return fmt.Errorf("window size %dx%d: %w", width, height, errdefs.ErrInvalidArgument)
	}
	ws := &unix.Winsize{Col: uint16(width), Row: uint16(height)}
	rc, err := p.console.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	// Control rather than Fd: Fd would switch the master to blocking mode.
	if err := rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws)
	}); err != nil {
		return err
	}
	if ioctlErr != nil {
		return fmt.Errorf("resize terminal: %w", ioctlErr)
	}
	return nil
}

// nopCloser keeps the output copy from closing the master, which stdin
// still writes to; Close closes it.
type nopCloser struct{ io.Reader }

func (nopCloser) Close() error { return nil }

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
