package storage

import (
	"context"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/snapshots"
)

// Layout is what sets one directory-per-snapshot snapshotter apart from
// another: everything else (records, creation, commit, removal, walking)
// is the Store's and the same for all of them.
type Layout struct {
	// Work asks for an overlay work directory in every active snapshot.
	Work bool
	// Fill fills a new snapshot's directory before it is recorded.
	Fill FillFunc
	// Mounts says how an active or view snapshot is mounted.
	Mounts func(Snapshot) []mount.Mount
}

// Snapshotter is a snapshots.Snapshotter and snapshots.Cleaner over a
// Store, laid out by a Layout. Snapshotters embed it and add their layout.
type Snapshotter struct {
	store      *Store
	layout     Layout
	syncRemove bool
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// NewSnapshotter serves store with layout. With syncRemove set, Remove
// deletes a snapshot's data before it returns instead of leaving it to the
// background deleter.
func NewSnapshotter(store *Store, layout Layout, syncRemove bool) *Snapshotter {
	return &Snapshotter{store: store, layout: layout, syncRemove: syncRemove}
}

// Stat describes the snapshot key.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	return s.store.Stat(ctx, key)
}

// Update changes the labels of a snapshot.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return s.store.Update(ctx, info, fieldpaths...)
}

// Usage is the disk used by the snapshot's own directory; see Store.Usage.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return s.store.Usage(ctx, key)
}

// Mounts returns the mounts of an active or view snapshot.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	snap, err := s.store.Snapshot(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.layout.Mounts(snap), nil
}

// Prepare creates an active snapshot on parent.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View creates a read-only snapshot of parent.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	snap, err := s.store.Create(ctx, kind, key, parent, s.layout.Work, s.layout.Fill, opts...)
	if err != nil {
		return nil, err
	}
	return s.layout.Mounts(snap), nil
}

// Commit freezes the active snapshot key as the committed snapshot name,
// recording the disk usage of its directory.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.store.Commit(ctx, name, key, opts...)
}

// Remove forgets a snapshot without children at once; its directory is
// deleted in the background (or before returning, with syncRemove).
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	return s.store.Remove(ctx, key, s.syncRemove)
}

// Walk calls fn for each snapshot matching any of filters.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.store.Walk(ctx, fn, filters...)
}

// Cleanup deletes the directories of removed snapshots now.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	return s.store.Cleanup(ctx)
}

// Close stops background deletion and closes the database.
func (s *Snapshotter) Close() error {
	return s.store.Close()
}
