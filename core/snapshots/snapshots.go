// Package snapshots defines the snapshotter: the store of filesystem layers
// from which container root filesystems are assembled. Implementations live
// under snapshotters/; the namespaced view with GC labels lives in
// core/metadata.
package snapshots

import (
	"context"
	"time"

	"github.com/berthd/berth/core/mount"
)

// Kind is the state of a snapshot.
type Kind uint8

const (
	KindUnknown Kind = iota
	// KindView is a read-only snapshot of a committed parent.
	KindView
	// KindActive is a writable snapshot that can be committed.
	KindActive
	// KindCommitted is an immutable snapshot that can be a parent.
	KindCommitted
)

func (k Kind) String() string {
	switch k {
	case KindView:
		return "View"
	case KindActive:
		return "Active"
	case KindCommitted:
		return "Committed"
	}
	return "Unknown"
}

// ParseKind is the inverse of Kind.String, case-insensitive.
func ParseKind(s string) Kind {
	switch s {
	case "view", "View":
		return KindView
	case "active", "Active":
		return KindActive
	case "committed", "Committed":
		return KindCommitted
	}
	return KindUnknown
}

// Info describes one snapshot.
type Info struct {
	Kind    Kind
	Name    string // key of an active/view snapshot, name of a committed one
	Parent  string // name of the committed parent, empty for a base layer
	Labels  map[string]string
	Created time.Time
	Updated time.Time
}

// Usage is the disk used by one snapshot on its own (not its parents).
type Usage struct {
	Inodes int64
	Size   int64
}

// Add sums two usages.
func (u *Usage) Add(o Usage) {
	u.Inodes += o.Inodes
	u.Size += o.Size
}

// WalkFunc is called for each snapshot by Walk.
type WalkFunc func(context.Context, Info) error

// Opt changes a snapshot being created.
type Opt func(*Info) error

// WithLabels sets labels on the snapshot being created.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		if info.Labels == nil {
			info.Labels = map[string]string{}
		}
		for k, v := range labels {
			info.Labels[k] = v
		}
		return nil
	}
}

// Snapshotter keeps layers. Keys name active and view snapshots; names name
// committed ones; both live in one space. errdefs errors: ErrNotFound for an
// unknown key, ErrAlreadyExists for a taken key, ErrFailedPrecondition for
// removing a snapshot with children or committing a non-active one,
// ErrInvalidArgument for a parent that is not committed.
type Snapshotter interface {
	Stat(ctx context.Context, key string) (Info, error)
	// Update changes labels (fieldpaths "labels", "labels.<key>"; none = all).
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Usage is the disk used by the snapshot itself.
	Usage(ctx context.Context, key string) (Usage, error)
	// Mounts returns the mounts of an active or view snapshot.
	Mounts(ctx context.Context, key string) ([]mount.Mount, error)
	// Prepare creates a writable snapshot on top of parent (may be "").
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// View creates a read-only snapshot of parent.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// Commit turns the active snapshot key into the committed snapshot name.
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove deletes a snapshot that has no children.
	Remove(ctx context.Context, key string) error
	// Walk calls fn for each snapshot matching any of filters.
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	// Close releases the snapshotter's resources.
	Close() error
}

// Cleaner is implemented by snapshotters that remove data asynchronously:
// Cleanup removes whatever Remove left behind.
type Cleaner interface {
	Cleanup(ctx context.Context) error
}
