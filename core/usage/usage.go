// Package usage describes what berth's objects cost: disk space and counts.
// Plugins that own objects (metadata, snapshotters, volumes, the runtime)
// implement the reporter interfaces; the system service adds them up for
// `berth info` and `berth system df`.
package usage

import "context"

// Summary is the disk use of one kind of object.
type Summary struct {
	Type        string // "Images", "Containers", "Local Volumes", "Content"
	Total       int64  // number of objects
	Active      int64  // objects in use
	Size        int64  // bytes
	Reclaimable int64  // bytes freed by pruning what is unused
}

// Item is the disk use of one object, for verbose reports.
type Item struct {
	Type       string
	Namespace  string
	Name       string
	Size       int64
	SharedSize int64
	Users      int64
}

// DiskReporter reports disk use in namespace ns ("" = all namespaces).
type DiskReporter interface {
	DiskUsage(ctx context.Context, ns string, verbose bool) ([]Summary, []Item, error)
}

// TaskCounts counts the tasks of one namespace by state.
type TaskCounts struct {
	Running, Paused, Stopped int64
}

// TaskCounter reports task counts per namespace.
type TaskCounter interface {
	TaskCounts(ctx context.Context) (map[string]TaskCounts, error)
}

// ObjectCounter reports object counts per namespace: kind ("images",
// "containers") to count.
type ObjectCounter interface {
	ObjectCounts(ctx context.Context) (map[string]map[string]int64, error)
}
