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
// snapshots.Snapshotter and snapshots.Cleaner. Usage is the disk used by
// the snapshot's own tree: the full copy for active and committed
// snapshots, nothing for views.
type Snapshotter struct {
	*storage.Snapshotter
	store *storage.Store
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
	s := &Snapshotter{store: store}
	s.Snapshotter = storage.NewSnapshotter(store, storage.Layout{Fill: s.fill, Mounts: s.mounts}, c.syncRemove)
	return s, nil
}

// fill copies the parent's tree into a new active snapshot. Views bind
// their parent instead, which never changes once committed.
func (s *Snapshotter) fill(ctx context.Context, snap storage.Snapshot, dir string) error {
	if snap.Kind != snapshots.KindActive || len(snap.ParentIDs) == 0 {
		return nil
	}
	return copyTree(ctx, s.store.FS(snap.ParentIDs[0]), filepath.Join(dir, "fs"))
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
