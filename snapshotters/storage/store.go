package storage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/snapshots"
	"github.com/containerd/errdefs"
)

// DatabaseFile is the name of the record database in a snapshotter root.
const DatabaseFile = "metadata.db"

// Store is a snapshotter's persistent state, records and directories, with
// the snapshot operations that need nothing else: a snapshotter adds how a
// new snapshot's directory is filled and how it is mounted.
type Store struct {
	ms   *MetaStore
	dirs *Dirs
}

// Open opens the state kept in root (created if missing) and discards the
// directories a crash may have left without a record.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create snapshotter root %s: %w", root, err)
	}
	ms, err := OpenMetaStore(filepath.Join(root, DatabaseFile))
	if err != nil {
		return nil, err
	}
	dirs, err := OpenDirs(root)
	if err != nil {
		ms.Close()
		return nil, err
	}
	s := &Store{ms: ms, dirs: dirs}
	if err := s.sweep(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) sweep() error {
	var ids map[uint64]bool
	err := s.ms.View(context.Background(), func(tx *Tx) (err error) {
		ids, err = tx.IDs()
		return err
	})
	if err != nil {
		return fmt.Errorf("list snapshot ids: %w", err)
	}
	return s.dirs.Sweep(ids)
}

// FS is the filesystem directory of snapshot id.
func (s *Store) FS(id uint64) string { return s.dirs.FS(id) }

// Work is the overlay work directory of snapshot id.
func (s *Store) Work(id uint64) string { return s.dirs.Work(id) }

// FillFunc fills the directory of a snapshot being created (dir holds fs/
// and, for an active snapshot of a snapshotter that asked, work/) before it
// is recorded. It runs outside any transaction, so it may take its time.
type FillFunc func(ctx context.Context, snap Snapshot, dir string) error

// Create makes an active or view snapshot: it checks key and parent, makes
// and fills a new directory, then records the snapshot and moves the
// directory into place in one short transaction. withWork asks for an
// overlay work directory for active snapshots.
func (s *Store) Create(ctx context.Context, kind snapshots.Kind, key, parent string, withWork bool, fill FillFunc, opts ...snapshots.Opt) (Snapshot, error) {
	planned, err := s.plan(ctx, kind, key, parent)
	if err != nil {
		return Snapshot{}, err
	}
	tmp, err := s.dirs.Create(withWork && kind == snapshots.KindActive)
	if err != nil {
		return Snapshot{}, err
	}
	if err := fill(ctx, planned, tmp); err != nil {
		s.dirs.Abandon(tmp)
		return Snapshot{}, fmt.Errorf("fill snapshot %q: %w", key, err)
	}
	var snap Snapshot
	installed := false
	err = s.ms.Update(ctx, func(tx *Tx) (err error) {
		if snap, err = tx.Create(kind, key, parent, opts...); err != nil {
			return err
		}
		if !slices.Equal(snap.ParentIDs, planned.ParentIDs) {
			return fmt.Errorf("parent %q of snapshot %q was replaced while it was being created: %w", parent, key, errdefs.ErrAborted)
		}
		if err := s.dirs.Install(tmp, snap.ID); err != nil {
			return err
		}
		installed = true
		return nil
	})
	if err != nil {
		s.undoCreate(tmp, snap.ID, installed)
		return Snapshot{}, err
	}
	return snap, nil
}

// plan checks what Create would do without writing: the key is free and
// the parent committed; it returns the snapshot with id 0.
func (s *Store) plan(ctx context.Context, kind snapshots.Kind, key, parent string) (Snapshot, error) {
	planned := Snapshot{Kind: kind}
	err := s.ms.View(ctx, func(tx *Tx) error {
		if err := tx.checkFree(key); err != nil {
			return err
		}
		if parent == "" {
			return nil
		}
		var r record
		if err := tx.setParent(&r, key, parent); err != nil {
			return err
		}
		planned.ParentIDs = r.parents
		return nil
	})
	return planned, err
}

// undoCreate drops the directory of a creation whose transaction failed;
// if it was installed under the id, that id is not recorded (the
// transaction rolled back), so its directory is discarded.
func (s *Store) undoCreate(tmp string, id uint64, installed bool) {
	if !installed {
		s.dirs.Abandon(tmp)
		return
	}
	if err := s.dirs.Discard(id); err != nil {
		slog.Warn("cannot discard directory of a failed snapshot creation", "id", id, "error", err)
	}
}

// Snapshot returns the layout of the active or view snapshot key.
func (s *Store) Snapshot(ctx context.Context, key string) (snap Snapshot, err error) {
	err = s.ms.View(ctx, func(tx *Tx) error {
		snap, err = tx.Snapshot(key)
		return err
	})
	return snap, err
}

// Stat describes the snapshot key.
func (s *Store) Stat(ctx context.Context, key string) (info snapshots.Info, err error) {
	err = s.ms.View(ctx, func(tx *Tx) error {
		_, info, _, err = tx.Info(key)
		return err
	})
	return info, err
}

// Update changes labels; see Tx.Update.
func (s *Store) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (updated snapshots.Info, err error) {
	err = s.ms.Update(ctx, func(tx *Tx) error {
		updated, err = tx.Update(info, fieldpaths...)
		return err
	})
	return updated, err
}

// Usage is the usage recorded at commit for committed snapshots and views,
// and measured now for active ones, whose content still changes.
func (s *Store) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	var (
		id    uint64
		info  snapshots.Info
		usage snapshots.Usage
	)
	err := s.ms.View(ctx, func(tx *Tx) (err error) {
		id, info, usage, err = tx.Info(key)
		return err
	})
	if err != nil || info.Kind != snapshots.KindActive {
		return usage, err
	}
	return DiskUsage(ctx, s.dirs.FS(id))
}

// Commit measures the active snapshot key outside any transaction, then
// records it as the committed snapshot name.
func (s *Store) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	var id uint64
	err := s.ms.View(ctx, func(tx *Tx) error {
		snap, err := tx.Snapshot(key)
		if err == nil && snap.Kind != snapshots.KindActive {
			err = fmt.Errorf("commit snapshot %q: it is a view, not active: %w", key, errdefs.ErrFailedPrecondition)
		}
		id = snap.ID
		return err
	})
	if err != nil {
		return err
	}
	usage, err := DiskUsage(ctx, s.dirs.FS(id))
	if err != nil {
		return err
	}
	return s.ms.Update(ctx, func(tx *Tx) error {
		got, err := tx.Commit(key, name, usage, opts...)
		if err == nil && got != id {
			err = fmt.Errorf("snapshot %q was replaced while it was being committed: %w", key, errdefs.ErrAborted)
		}
		return err
	})
}

// Remove forgets the snapshot key and sets its directory aside; the data
// is deleted in the background or by Cleanup. With sync set it is deleted
// before Remove returns.
func (s *Store) Remove(ctx context.Context, key string, sync bool) error {
	var id uint64
	err := s.ms.Update(ctx, func(tx *Tx) (err error) {
		id, _, err = tx.Remove(key)
		return err
	})
	if err != nil {
		return err
	}
	// The record is gone for good; a directory that cannot be moved now
	// is found without a record and discarded at the next open.
	if err := s.dirs.Discard(id); err != nil {
		slog.Warn("cannot set aside directory of removed snapshot", "key", key, "id", id, "error", err)
		return nil
	}
	if sync {
		return s.dirs.Cleanup(ctx)
	}
	return nil
}

// Walk calls fn for every snapshot matching any of the filters (containerd
// filter syntax over the fields kind, name, parent and labels.<key>). fn
// runs after the read transaction ends, so it may call the snapshotter.
func (s *Store) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return err
	}
	var infos []snapshots.Info
	err = s.ms.View(ctx, func(tx *Tx) error {
		return tx.Walk(func(info snapshots.Info, _ snapshots.Usage) error {
			if filter.Match(adapt(info)) {
				infos = append(infos, info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// adapt exposes a snapshot's fields to filters by containerd's names.
func adapt(info snapshots.Info) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "kind":
			return strings.ToLower(info.Kind.String()), true
		case "name":
			return info.Name, true
		case "parent":
			return info.Parent, info.Parent != ""
		case "labels":
			if len(fieldpath) < 2 {
				return "", false
			}
			v, ok := info.Labels[strings.Join(fieldpath[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

// Cleanup deletes the data of removed snapshots now.
func (s *Store) Cleanup(ctx context.Context) error {
	return s.dirs.Cleanup(ctx)
}

// Close stops background deletion and closes the database.
func (s *Store) Close() error {
	s.dirs.Close()
	return s.ms.Close()
}
