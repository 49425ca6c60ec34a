package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/core/mount"
	"golang.org/x/sys/unix"
)

// Directory name prefixes inside <root>/snapshots besides the numeric ids.
const (
	newPrefix     = "new-" // being filled, not yet recorded
	discardPrefix = "rm-"  // removed from the records, waiting for deletion
)

// Dirs is the layout of snapshot data: <root>/snapshots/<id>/{fs,work}.
// Removal is asynchronous: Discard renames a directory aside at once and a
// background goroutine (or Cleanup) deletes it, so no caller waits for a
// big tree to go.
type Dirs struct {
	root string

	removeMu  sync.Mutex // one deleter at a time
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// OpenDirs creates <root>/snapshots if needed and starts the background
// deleter; Close stops it.
func OpenDirs(root string) (*Dirs, error) {
	dir := filepath.Join(root, "snapshots")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create snapshot directory %s: %w", dir, err)
	}
	d := &Dirs{
		root: dir,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go d.reap()
	return d, nil
}

// Path is the directory of snapshot id.
func (d *Dirs) Path(id uint64) string {
	return filepath.Join(d.root, strconv.FormatUint(id, 10))
}

// FS is the filesystem directory of snapshot id (the upper layer).
func (d *Dirs) FS(id uint64) string { return filepath.Join(d.Path(id), "fs") }

// Work is the overlay work directory of snapshot id.
func (d *Dirs) Work(id uint64) string { return filepath.Join(d.Path(id), "work") }

// Create makes a new, unrecorded snapshot directory with an empty fs
// (mode 0755) and, if work is set, an overlay work directory. The caller
// installs it under an id with Install or drops it with Abandon.
func (d *Dirs) Create(work bool) (string, error) {
	tmp, err := os.MkdirTemp(d.root, newPrefix)
	if err != nil {
		return "", fmt.Errorf("create snapshot directory: %w", err)
	}
	// MkdirTemp makes 0700; the fs directory must read as a normal root.
	err = os.Mkdir(filepath.Join(tmp, "fs"), 0o755)
	if err == nil {
		err = os.Chmod(filepath.Join(tmp, "fs"), 0o755) // umask-proof
	}
	if err == nil && work {
		err = os.Mkdir(filepath.Join(tmp, "work"), 0o700)
	}
	if err != nil {
		d.Abandon(tmp)
		return "", fmt.Errorf("populate snapshot directory %s: %w", tmp, err)
	}
	return tmp, nil
}

// Install moves a directory made by Create to the place of snapshot id.
// A directory already there cannot belong to a recorded snapshot (ids are
// never reused once committed), so it is discarded first.
func (d *Dirs) Install(tmp string, id uint64) error {
	path := d.Path(id)
	err := os.Rename(tmp, path)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		slog.Warn("discarding stale snapshot directory", "path", path)
		if err := d.discardPath(path, id); err != nil {
			return err
		}
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("install snapshot directory %d: %w", id, err)
	}
	return nil
}

// Abandon discards a directory made by Create that will not be installed.
func (d *Dirs) Abandon(tmp string) {
	name := discardPrefix + strings.TrimPrefix(filepath.Base(tmp), newPrefix)
	if err := os.Rename(tmp, filepath.Join(d.root, name)); err != nil {
		slog.Warn("cannot discard snapshot directory", "path", tmp, "error", err)
		return
	}
	d.wake()
}

// Discard renames the directory of snapshot id aside for deletion.
func (d *Dirs) Discard(id uint64) error {
	if err := d.discardPath(d.Path(id), id); err != nil {
		return err
	}
	d.wake()
	return nil
}

func (d *Dirs) discardPath(path string, id uint64) error {
	for i := 0; ; i++ {
		name := fmt.Sprintf("%s%d-%d", discardPrefix, id, time.Now().UnixNano()+int64(i))
		err := os.Rename(path, filepath.Join(d.root, name))
		switch {
		case err == nil || errors.Is(err, os.ErrNotExist):
			return nil
		case (errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY)) && i < 10:
			continue
		default:
			return fmt.Errorf("discard snapshot directory %s: %w", path, err)
		}
	}
}

// Sweep discards every directory that no record owns: numeric ids missing
// from live and directories left half-made by a crash. It must run before
// the snapshotter takes requests, since it cannot tell a directory being
// made right now from one a crash left.
func (d *Dirs) Sweep(live map[uint64]bool) error {
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return fmt.Errorf("list snapshot directories: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, newPrefix) {
			d.Abandon(filepath.Join(d.root, name))
			continue
		}
		id, err := strconv.ParseUint(name, 10, 64)
		if err != nil || live[id] {
			continue
		}
		slog.Info("discarding snapshot directory without a record", "path", filepath.Join(d.root, name))
		if err := d.discardPath(filepath.Join(d.root, name), id); err != nil {
			return err
		}
	}
	d.wake()
	return nil
}

func (d *Dirs) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *Dirs) reap() {
	defer close(d.done)
	for {
		select {
		case <-d.stop:
			return
		case <-d.kick:
			if err := d.removeDiscarded(d.stop); err != nil {
				slog.Warn("remove discarded snapshot directories", "root", d.root, "error", err)
			}
		}
	}
}

// Cleanup deletes every discarded directory now.
func (d *Dirs) Cleanup(ctx context.Context) error {
	return d.removeDiscarded(ctx.Done())
}

// removeDiscarded deletes discarded directories one by one until done or
// stop closes; what is left waits for the next round.
func (d *Dirs) removeDiscarded(stop <-chan struct{}) error {
	d.removeMu.Lock()
	defer d.removeMu.Unlock()
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return fmt.Errorf("list snapshot directories: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), discardPrefix) {
			continue
		}
		select {
		case <-stop:
			return errors.Join(errs...)
		default:
		}
		if err := removeTree(filepath.Join(d.root, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTree deletes dir; a mount left inside (a forgotten view, say) is
// detached first, since the snapshot it belonged to is gone anyway.
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	points, merr := mount.MountedUnder(dir)
	if merr != nil || len(points) == 0 {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	slog.Warn("detaching mounts left in a removed snapshot", "path", dir, "mounts", points)
	if err := mount.UnmountRecursive(dir, unix.MNT_DETACH); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// Close stops the background deleter, waiting for the directory it is
// deleting, if any; the rest are deleted after the next open.
func (d *Dirs) Close() {
	d.closeOnce.Do(func() { close(d.stop) })
	<-d.done
}
