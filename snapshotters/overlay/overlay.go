// Package overlay is the overlayfs snapshotter: each snapshot is a
// directory holding its own layer (<root>/snapshots/<id>/fs); an active
// snapshot mounts as an overlay of its parents' layers under its own
// writable one, and committing it just freezes that layer.
//
// Mounts handed out:
//   - active, no parent: a read-write bind mount of its layer;
//   - active on parents: overlay, upperdir = its layer, lowerdir = the
//     parents' layers, nearest first;
//   - view of nothing: a read-only bind mount of its empty layer;
//   - view of one layer: a read-only bind mount of that layer;
//   - view of several: a read-only overlay of them (lowerdir only).
//
// Long lowerdir chains (hundreds of layers) are mounted by core/mount,
// which gets around the one-page limit of mount(2) data.
package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/snapshotters/storage"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Opt configures New.
type Opt func(*config) error

type config struct {
	mountOptions []string
	syncRemove   bool
}

// WithMountOptions adds overlay options to every overlay mount, after the
// defaults (a later option overrides an earlier one in overlayfs). Layer
// options (lowerdir, upperdir, workdir) are the snapshotter's own and are
// refused.
func WithMountOptions(options ...string) Opt {
	return func(c *config) error {
		for _, o := range options {
			switch key, _, _ := strings.Cut(o, "="); key {
			case "lowerdir", "upperdir", "workdir", "":
				return fmt.Errorf("overlay mount option %q: layer options are set by the snapshotter: %w", o, errdefs.ErrInvalidArgument)
			}
		}
		c.mountOptions = append(c.mountOptions, options...)
		return nil
	}
}

// WithSyncRemove makes Remove delete a snapshot's data before it returns,
// instead of leaving it to the background deleter.
func WithSyncRemove() Opt {
	return func(c *config) error {
		c.syncRemove = true
		return nil
	}
}

// Snapshotter is the overlayfs snapshotter. It implements
// snapshots.Snapshotter and snapshots.Cleaner. Usage is the disk used by
// the snapshot's own layer.
type Snapshotter struct {
	*storage.Snapshotter
	store   *storage.Store
	options []string
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// New opens (creating if needed) an overlay snapshotter in root. It first
// checks, with a real mount in root, that overlayfs works there with the
// chosen options; if not, the error wraps ErrUnsupported and says why.
func New(root string, opts ...Opt) (*Snapshotter, error) {
	var c config
	for _, opt := range opts {
		if err := opt(&c); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create overlay snapshotter root %s: %w", root, err)
	}
	options := append(defaultOptions(), c.mountOptions...)
	if err := Check(root, options); err != nil {
		return nil, err
	}
	store, err := storage.Open(root)
	if err != nil {
		return nil, err
	}
	s := &Snapshotter{store: store, options: options}
	layout := storage.Layout{Work: true, Fill: s.fill, Mounts: s.mounts}
	s.Snapshotter = storage.NewSnapshotter(store, layout, c.syncRemove)
	return s, nil
}

// fill gives a new layer's root the owner and mode of its parent's root:
// the root of an overlay takes its attributes from the upper layer, so
// without this a container whose image root is not root:0755 would see it
// change.
func (s *Snapshotter) fill(_ context.Context, snap storage.Snapshot, dir string) error {
	if len(snap.ParentIDs) == 0 {
		return nil
	}
	var st unix.Stat_t
	parent := s.store.FS(snap.ParentIDs[0])
	if err := unix.Stat(parent, &st); err != nil {
		return fmt.Errorf("stat parent layer %s: %w", parent, err)
	}
	fs := filepath.Join(dir, "fs")
	if err := unix.Lchown(fs, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown new layer root: %w", err)
	}
	if err := unix.Chmod(fs, st.Mode&07777); err != nil {
		return fmt.Errorf("chmod new layer root: %w", err)
	}
	return nil
}

func (s *Snapshotter) mounts(snap storage.Snapshot) []mount.Mount {
	switch {
	case len(snap.ParentIDs) == 0:
		return []mount.Mount{bind(s.store.FS(snap.ID), snap.Kind == snapshots.KindView)}
	case snap.Kind == snapshots.KindView && len(snap.ParentIDs) == 1:
		return []mount.Mount{bind(s.store.FS(snap.ParentIDs[0]), true)}
	}
	lower := make([]string, len(snap.ParentIDs))
	for i, id := range snap.ParentIDs {
		lower[i] = s.store.FS(id)
	}
	var options []string
	if snap.Kind == snapshots.KindActive {
		options = append(options, "workdir="+s.store.Work(snap.ID), "upperdir="+s.store.FS(snap.ID))
	} else {
		options = append(options, "ro")
	}
	options = append(options, "lowerdir="+strings.Join(lower, ":"))
	options = append(options, s.options...)
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: options}}
}

func bind(dir string, readOnly bool) mount.Mount {
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	return mount.Mount{Type: "bind", Source: dir, Options: []string{mode, "rbind"}}
}
