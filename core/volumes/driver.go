package volumes

import "context"

// Driver keeps the data of volumes. Every io.berth.volume.v1 plugin
// implements it; the Store calls it with the volume's record, never
// concurrently for the same volume.
type Driver interface {
	// Create checks v.Options and prepares v's data, returning the host
	// directory that will hold it. An existing directory of the same name
	// is adopted.
	Create(ctx context.Context, v Volume) (mountpoint string, err error)
	// Remove deletes v's data, unmounting it first. Removing what is
	// already gone succeeds.
	Remove(ctx context.Context, v Volume) error
	// Mount makes v's data available at its mountpoint, whatever state a
	// crash left it in, and returns the host path to bind into
	// containers. It is called for every container start.
	Mount(ctx context.Context, v Volume) (string, error)
	// Unmount undoes Mount; the Store calls it when the last running user
	// stops.
	Unmount(ctx context.Context, v Volume) error
	// Size returns the bytes v's data takes, or -1 when the data is not
	// the volume's own (a bind of a host directory).
	Size(ctx context.Context, v Volume) (int64, error)
}

// RunningFunc says whether container id (in ctx's namespace) is running.
// The runtime hands one to the Store with SetRunningFunc.
type RunningFunc func(ctx context.Context, containerID string) (bool, error)
