// Package native is the copy-based snapshotter, which works on any
// filesystem: preparing a snapshot copies its parent's whole tree into a
// new directory (reflinked where the filesystem can), and every mount is a
// bind mount. Committing keeps the directory as it is. A view needs no copy:
// it binds its committed parent read-only.
package native

import (
	"context"
	"path/filepath"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/snapshotters/storage"
)

// Opt configures New.
type Opt func(*config)

type config struct {
	syncRemove bool
}

// WithSyncRemove makes Remove delete a snapshot's data before it returns,
// instead of leaving it to the background deleter.
func WithSyncRemove() Opt {
	return func(c *config) { c.syncRemove = true }
}

// Snapshotter is the native snapshotter. It implements
// snapshots.Snapshotter and snapshots.Cleaner.
type Snapshotter struct {
	store      *storage.Store
	syncRemove bool
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// New opens (creating if needed) a native snapshotter in root.
func New(root string, opts ...Opt) (*Snapshotter, error) {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	store, err := storage.Open(root)
	if err != nil {
		return nil, err
	}
	return &Snapshotter{store: store, syncRemove: c.syncRemove}, nil
}

// Stat describes the snapshot key.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	return s.store.Stat(ctx, key)
}

// Update changes the labels of a snapshot.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return s.store.Update(ctx, info, fieldpaths...)
}

// Usage is the disk used by the snapshot's own tree: the full copy for
// active and committed snapshots, nothing for views.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return s.store.Usage(ctx, key)
}

// Mounts returns the mounts of an active or view snapshot.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	snap, err := s.store.Snapshot(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.mounts(snap), nil
}

// Prepare creates an active snapshot holding a copy of parent.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View creates a read-only snapshot of parent.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	snap, err := s.store.Create(ctx, kind, key, parent, false, s.fill, opts...)
	if err != nil {
		return nil, err
	}
	return s.mounts(snap), nil
}

// fill copies the parent's tree into a new active snapshot. Views bind
// their parent instead, which never changes once committed.
func (s *Snapshotter) fill(ctx context.Context, snap storage.Snapshot, dir string) error {
	if snap.Kind != snapshots.KindActive || len(snap.ParentIDs) == 0 {
		return nil
	}
	return copyTree(ctx, s.store.FS(snap.ParentIDs[0]), filepath.Join(dir, "fs"))
}

// Commit freezes the active snapshot key as the committed snapshot name.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.store.Commit(ctx, name, key, opts...)
}

// Remove forgets a snapshot without children at once; its tree is deleted
// in the background (or before returning, with WithSyncRemove).
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	return s.store.Remove(ctx, key, s.syncRemove)
}

// Walk calls fn for each snapshot matching any of filters.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.store.Walk(ctx, fn, filters...)
}

// Cleanup deletes the trees of removed snapshots now.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	return s.store.Cleanup(ctx)
}

// Close stops background deletion and closes the database.
func (s *Snapshotter) Close() error {
	return s.store.Close()
}

func (s *Snapshotter) mounts(snap storage.Snapshot) []mount.Mount {
	dir, mode := s.store.FS(snap.ID), "rw"
	if snap.Kind == snapshots.KindView {
		mode = "ro"
		if len(snap.ParentIDs) > 0 {
			dir = s.store.FS(snap.ParentIDs[0])
		}
	}
	return []mount.Mount{{Type: "bind", Source: dir, Options: []string{mode, "rbind"}}}
}
