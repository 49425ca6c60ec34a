package logs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Without inotify (instances used up), the live file is polled this often;
// with it, safetyPoll only covers events the kernel dropped.
const (
	pollInterval = 50 * time.Millisecond
	safetyPoll   = time.Second
)

// follow reads the live file f (nil: not created yet) from off, then what
// is appended to it, moving on to the new live file when the writer
// rotates, until r.o.Done is closed and everything is read.
func (r *reader) follow(ctx context.Context, path string, f *os.File, off int64) error {
	w := newWatcher(filepath.Dir(path))
	defer w.close()
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	r.pending = r.pending[:0]
	if f != nil {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return err
		}
	}
	interval := safetyPoll
	if w == nil {
		interval = pollInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	done, finished := r.o.Done, false
	for {
		if f == nil {
			f = openIfExists(path)
		}
		if f != nil {
			next, err := r.drain(f, path)
			if err != nil {
				return err
			}
			if next != f {
				f = next
				continue
			}
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			// Read once more: what was written before Done is wanted.
			finished, done = true, nil
		case <-w.wake():
		case <-tick.C:
		}
	}
}

// drain reads what f holds; when the writer has rotated it away or
// truncated it, it returns the file to read next (the new live file, nil
// while the writer has not created it yet), else f.
func (r *reader) drain(f *os.File, path string) (*os.File, error) {
	if _, err := r.readMore(f); err != nil {
		return f, err
	}
	cur, err := f.Stat()
	if err != nil {
		return f, err
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return f, err
	}
	if cur.Size() < pos {
		// Truncated in place (a single rotated file): start over.
		r.pending = r.pending[:0]
		_, err := f.Seek(0, io.SeekStart)
		return f, err
	}
	now, err := os.Stat(path)
	if err == nil && os.SameFile(cur, now) {
		return f, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	// Rotated: the writer renamed f and writes to a new file. Whatever it
	// wrote to f before the rename is there now.
	if _, err := r.readMore(f); err != nil {
		return f, err
	}
	f.Close()
	r.pending = r.pending[:0]
	return openIfExists(path), nil
}

func openIfExists(path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	return f
}

// watcher wakes a follower when anything in the log's folder changes.
type watcher struct {
	f  *os.File
	ch chan struct{}
}

// newWatcher watches dir with inotify; nil when it cannot (the follower
// then polls).
func newWatcher(dir string) *watcher {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		slog.Debug("inotify unavailable, polling log", "error", err)
		return nil
	}
	const mask = unix.IN_MODIFY | unix.IN_CREATE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_CLOSE_WRITE
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		unix.Close(fd)
		slog.Debug("inotify watch failed, polling log", "dir", dir, "error", err)
		return nil
	}
	// A non-blocking descriptor goes to Go's poller, so Close ends the
	// reading goroutine.
	w := &watcher{f: os.NewFile(uintptr(fd), "inotify"), ch: make(chan struct{}, 1)}
	go w.run()
	return w
}

func (w *watcher) run() {
	buf := make([]byte, 4096)
	for {
		if _, err := w.f.Read(buf); err != nil {
			if !errors.Is(err, os.ErrClosed) && !errors.Is(err, syscall.EINTR) {
				slog.Debug("inotify read", "error", err)
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

func (w *watcher) wake() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.ch
}

func (w *watcher) close() {
	if w != nil {
		w.f.Close()
	}
}
