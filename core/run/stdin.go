package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// stdinFIFO makes (or finds) the FIFO container id reads its input from.
// It lives in the state folder, so it survives berthd restarts as the
// shim holding it does.
func (m *Manager) stdinFIFO(ns, id string) (string, error) {
	dir := m.stateDir(ns, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "stdin")
	if err := mkfifo(path); err != nil {
		return "", fmt.Errorf("container %s: stdin: %w", id, err)
	}
	return path, nil
}

// mkfifo makes a FIFO at path unless one is there.
func mkfifo(path string) error {
	err := unix.Mkfifo(path, 0o600)
	if errors.Is(err, syscall.EEXIST) {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFIFO {
			return nil
		}
		return fmt.Errorf("%s exists and is not a FIFO", path)
	}
	return err
}

// stdinWriter is berthd's write side of a process's stdin FIFO. It is
// opened read-write: the open never blocks and writes never fail while
// the shim (the reader) is there; the process sees end of input once
// this and the shim's own holder are closed.
type stdinWriter struct {
	mu sync.Mutex
	f  *os.File
}

func openStdin(path string) (*stdinWriter, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open stdin FIFO: %w", err)
	}
	return &stdinWriter{f: f}, nil
}

func (w *stdinWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	f := w.f
	w.mu.Unlock()
	if f == nil {
		return 0, os.ErrClosed
	}
	return f.Write(p)
}

func (w *stdinWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// stdinFor returns the run's stdin writer, opening it on first use.
func (run *runState) stdinFor(path string) (*stdinWriter, error) {
	run.stdinMu.Lock()
	defer run.stdinMu.Unlock()
	if run.stdinClosed {
		return nil, fmt.Errorf("the container's stdin was closed: %w", os.ErrClosed)
	}
	if run.stdin == nil {
		w, err := openStdin(path)
		if err != nil {
			return nil, err
		}
		run.stdin = w
	}
	return run.stdin, nil
}

// endStdin closes the run's stdin for good: the process sees end of
// input.
func (run *runState) endStdin(ctx context.Context) error {
	run.stdinMu.Lock()
	defer run.stdinMu.Unlock()
	if run.stdinClosed {
		return nil
	}
	run.stdinClosed = true
	if run.stdin != nil {
		run.stdin.Close()
	}
	if run.task == nil {
		return nil
	}
	return run.task.CloseIO(ctx)
}

// closeStdin releases berthd's writer when the run ends.
func (run *runState) closeStdin() {
	run.stdinMu.Lock()
	defer run.stdinMu.Unlock()
	run.stdinClosed = true
	if run.stdin != nil {
		run.stdin.Close()
	}
}
