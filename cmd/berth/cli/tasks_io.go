package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containerd/fifo"
)

// fifoSet is the stdio of one process through FIFOs the CLI creates, as
// ctr does: the shim opens the other ends.
type fifoSet struct {
	dir                   string
	stdin, stdout, stderr string
	terminal              bool
}

// newFIFOSet names the FIFOs of a process in a fresh folder under root
// (they are created when opened). Without a terminal stderr is separate.
func newFIFOSet(root, id string, terminal bool) (*fifoSet, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create FIFO folder: %w", err)
	}
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join(root, id+"-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create FIFO folder: %w", err)
	}
	f := &fifoSet{dir: dir, terminal: terminal,
		stdin: filepath.Join(dir, "stdin"), stdout: filepath.Join(dir, "stdout")}
	if !terminal {
		f.stderr = filepath.Join(dir, "stderr")
	}
	return f, nil
}

// fifoRoot is where the CLI keeps FIFOs: beside berthd's socket, so
// detached tasks' FIFOs stay findable for attach and go with the state.
func fifoRoot(address string) string {
	return filepath.Join(filepath.Dir(address), "fifo")
}

// remove deletes the FIFOs' folder.
func (f *fifoSet) remove() { os.RemoveAll(f.dir) }

// attachment copies a process's stdio between the FIFOs and the user.
type attachment struct {
	wg       sync.WaitGroup
	closers  []io.Closer
	stdinW   io.WriteCloser
	stdinEOF chan struct{}
	once     sync.Once
}

// attach opens the FIFOs (creating them when missing) and starts copying:
// in to stdin (when in is not nil; EOF on in closes stdin), stdout and
// stderr to out and errw. With out nil the output FIFOs are opened (so the
// shim can open its ends) but not read: what the process prints waits in
// them for a later attach.
func attach(ctx context.Context, paths fifoSet, in io.Reader, out, errw io.Writer) (*attachment, error) {
	a := &attachment{stdinEOF: make(chan struct{})}
	flags := syscall.O_CREAT | syscall.O_NONBLOCK
	if paths.stdin != "" && in == nil {
		// Detached: the FIFO exists for a later attach.
		if err := syscall.Mkfifo(paths.stdin, 0o700); err != nil && !os.IsExist(err) {
			return nil, fmt.Errorf("create stdin FIFO: %w", err)
		}
	}
	if paths.stdin != "" && in != nil {
		w, err := fifo.OpenFifo(ctx, paths.stdin, syscall.O_WRONLY|flags, 0o700)
		if err != nil {
			return nil, fmt.Errorf("open stdin FIFO: %w", err)
		}
		a.stdinW = w
		a.closers = append(a.closers, w)
		go func() {
			io.Copy(w, in)
			a.closeStdin()
		}()
	}
	for _, s := range []struct {
		path string
		w    io.Writer
	}{{paths.stdout, out}, {paths.stderr, errw}} {
		if s.path == "" {
			continue
		}
		r, err := fifo.OpenFifo(ctx, s.path, syscall.O_RDONLY|flags, 0o700)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("open output FIFO: %w", err)
		}
		a.closers = append(a.closers, r)
		if out == nil {
			continue
		}
		a.wg.Add(1)
		go func(r io.Reader, w io.Writer) {
			defer a.wg.Done()
			io.Copy(w, r)
		}(r, s.w)
	}
	return a, nil
}

// closeStdin closes the process's stdin once; stdinEOF then closes so the
// caller can tell the shim (CloseIO).
func (a *attachment) closeStdin() {
	a.once.Do(func() {
		if a.stdinW != nil {
			a.stdinW.Close()
		}
		close(a.stdinEOF)
	})
}

// wait waits until stdout and stderr reached their end (the shim closed
// them when the process exited).
func (a *attachment) wait() { a.wg.Wait() }

// close stops every copy.
func (a *attachment) close() {
	for _, c := range a.closers {
		c.Close()
	}
}
