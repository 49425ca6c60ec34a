// Package stdio connects a container process's standard streams to what the
// client asked for: FIFOs it created (the default), a JSON log file the shim
// owns (file://), or a logging binary (binary://). Pipes or a pty master sit
// between the process and the shim; the shim copies between them and the
// destinations, so output keeps flowing while the daemon is away.
//
// URI forms of Stdout (Stderr follows Stdout for file:// and binary://):
//
//	/path/to/fifo or fifo:///path   client FIFO (or an existing regular file)
//	file:///abs/path?max-size=10m&max-file=3&format=json
//	binary:///abs/path/to/logger?key=value
//
// file:// writes one JSON object per line, as Docker's json-file driver does:
// {"log":"line\n","stream":"stdout","time":"<RFC 3339, nanoseconds, UTC>"}.
// max-size is bytes with an optional k, m or g suffix (powers of 1024; 0 or
// absent means no rotation); max-file is how many files to keep, the live
// one included (default 1: the file is truncated when full); format=raw
// writes the bytes unchanged, as containerd's file:// does. partial=flush
// writes the unfinished line a write ends with at once, as an entry
// without its newline (the default, partial=buffer, waits for the line's
// end), so readers following the log see prompts as they appear.
//
// binary:// follows containerd: the binary runs with the query as
// "key value" arguments (sorted by key), CONTAINER_ID and CONTAINER_NAMESPACE
// in its environment, stdout on fd 3, stderr on fd 4, and signals readiness
// by writing to or closing fd 5. It gets SIGTERM when the process's I/O is
// closed, and SIGKILL 12 seconds later.
package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/fifo"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime/shim/reaper"
	"github.com/berthd/berth/runtime/shim/runc"
)

// Config is a process's stdio as the task API describes it.
type Config struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// IsNull reports whether the process has no stdio at all.
func (c Config) IsNull() bool {
	return c.Stdin == "" && c.Stdout == "" && c.Stderr == ""
}

// Env describes the process the streams belong to.
type Env struct {
	ID, Namespace string
	// UID and GID own the pipe ends handed to the process, so a process
	// running as another user can reopen them through /proc/self/fd.
	UID, GID int
	// Reaper starts and waits for logging binaries; nil runs them directly.
	Reaper *reaper.Reaper
}

// copyBufferSize bounds the memory each copy holds while it waits for data.
const copyBufferSize = 8 << 10

// ProcessIO is the shim's side of one process's streams.
type ProcessIO struct {
	runtime runc.IO
	// childEnds are the pipe ends the runtime passes to the process; the shim
	// closes its copies once the runtime has started the process.
	childEnds []*os.File
	// stdinHolder is a writer the shim keeps open on the stdin FIFO, so the
	// process does not see end of input while the client reconnects; CloseIO
	// closes it.
	stdinHolder io.Closer
	console     *os.File
	logger      *binaryLogger
	closers     []io.Closer
	copies      sync.WaitGroup
	closeOnce   sync.Once
}

// Runtime returns the streams to hand to the runtime (nil ones are
// /dev/null).
func (p *ProcessIO) Runtime() runc.IO {
	return p.runtime
}

// CloseChildEnds closes the shim's copies of the process's pipe ends; call it
// once the runtime has returned, so the copies see end of file when the
// process closes its streams.
func (p *ProcessIO) CloseChildEnds() {
	for _, f := range p.childEnds {
		f.Close()
	}
	p.childEnds = nil
}

// CloseStdin lets the process see end of input once the client closes its
// side of the stdin FIFO too.
func (p *ProcessIO) CloseStdin() error {
	if p.stdinHolder == nil {
		return nil
	}
	err := p.stdinHolder.Close()
	p.stdinHolder = nil
	if err != nil {
		return fmt.Errorf("close stdin: %w", err)
	}
	return nil
}

// Wait waits up to timeout for the output copies to drain and reports
// whether they did.
func (p *ProcessIO) Wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		p.copies.Wait()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Close releases every stream and stops the logging binary.
func (p *ProcessIO) Close() error {
	var errs []error
	p.closeOnce.Do(func() {
		p.CloseChildEnds()
		if p.stdinHolder != nil {
			p.stdinHolder.Close()
			p.stdinHolder = nil
		}
		for i := len(p.closers) - 1; i >= 0; i-- {
			if err := p.closers[i].Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, err)
			}
		}
		if p.logger != nil {
			if err := p.logger.stop(); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

// NewPipes prepares the streams of a process without a terminal: pipes to
// hand to the runtime and copies from them to the destinations, which are
// opened now so a bad destination fails the create or exec.
func NewPipes(ctx context.Context, cfg Config, env Env) (_ *ProcessIO, err error) {
	p := &ProcessIO{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if cfg.IsNull() {
		return p, nil
	}
	out, err := parseOutput(cfg.Stdout)
	if err != nil {
		return nil, err
	}
	if out.kind == kindBinary {
		if err := p.startLogger(ctx, out, cfg, env); err != nil {
			return nil, err
		}
	} else {
		if err := p.pipeOutputs(ctx, out, cfg, env); err != nil {
			return nil, err
		}
	}
	if cfg.Stdin != "" {
		w, child, err := p.pipe(env, true)
		if err != nil {
			return nil, err
		}
		p.runtime.Stdin = child
		if err := p.copyStdin(ctx, cfg.Stdin, w); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// pipeOutputs creates a pipe for each requested output stream and starts
// copying it to its destination.
func (p *ProcessIO) pipeOutputs(ctx context.Context, out output, cfg Config, env Env) error {
	for _, s := range []struct {
		name, path string
		set        **os.File
	}{
		{"stdout", cfg.Stdout, &p.runtime.Stdout},
		{"stderr", cfg.Stderr, &p.runtime.Stderr},
	} {
		dest := out
		if out.kind == kindFIFO {
			if s.path == "" {
				continue
			}
			dest = output{kind: kindFIFO, path: s.path}
		}
		w, err := dest.open(ctx, s.name)
		if err != nil {
			return err
		}
		r, child, err := p.pipe(env, false)
		if err != nil {
			w.Close()
			return err
		}
		*s.set = child
		p.copyOut(w, r)
	}
	return nil
}

// pipe creates a pipe and returns the shim's end and the process's end; the
// process's end is owned by env's user and remembered for CloseChildEnds.
// For stdin the process reads (forStdin), for outputs it writes.
func (p *ProcessIO) pipe(env Env, forStdin bool) (shimEnd, childEnd *os.File, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("create stdio pipe: %w", err)
	}
	shimEnd, childEnd = r, w
	if forStdin {
		shimEnd, childEnd = w, r
	}
	if env.UID != 0 || env.GID != 0 {
		if err := childEnd.Chown(env.UID, env.GID); err != nil {
			r.Close()
			w.Close()
			return nil, nil, fmt.Errorf("chown stdio pipe to %d:%d: %w", env.UID, env.GID, err)
		}
	}
	p.childEnds = append(p.childEnds, childEnd)
	p.closers = append(p.closers, shimEnd)
	return shimEnd, childEnd, nil
}

// copyOut copies r to w until r ends, then closes both.
func (p *ProcessIO) copyOut(w io.WriteCloser, r io.ReadCloser) {
	p.copies.Add(1)
	go func() {
		defer p.copies.Done()
		buf := make([]byte, copyBufferSize)
		_, _ = io.CopyBuffer(writerOnly{w}, eioIsEOF{r}, buf)
		w.Close()
		r.Close()
	}()
}

// writerOnly and readerOnly hide ReadFrom and WriteTo, which *os.File
// implements by falling back to io.Copy with a fresh 32 KiB buffer per copy
// when it cannot splice; the copies here use their own smaller buffer.
type writerOnly struct{ io.Writer }

type readerOnly struct{ io.Reader }

// copyStdin opens the client's stdin FIFO and copies it into w, closing w
// at its end so the process sees end of input.
func (p *ProcessIO) copyStdin(ctx context.Context, path string, w io.WriteCloser) error {
	// The holder is opened read-write first: it never blocks, and it keeps a
	// writer on the FIFO so the reader below neither blocks in open nor sees
	// end of file before the client has written anything.
	holder, err := fifo.OpenFifo(ctx, path, syscall.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open stdin %s: %w", path, err)
	}
	r, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY, 0)
	if err != nil {
		holder.Close()
		return fmt.Errorf("open stdin %s: %w", path, err)
	}
	p.stdinHolder = holder
	p.closers = append(p.closers, r)
	go func() {
		buf := make([]byte, copyBufferSize)
		_, _ = io.CopyBuffer(writerOnly{w}, readerOnly{r}, buf)
		w.Close()
		r.Close()
	}()
	return nil
}

// eioIsEOF turns the EIO a pty master returns once its slave side is closed
// into an ordinary end of file.
type eioIsEOF struct {
	io.Reader
}

func (r eioIsEOF) Read(b []byte) (int, error) {
	n, err := r.Reader.Read(b)
	if errors.Is(err, unix.EIO) {
		err = io.EOF
	}
	return n, err
}
