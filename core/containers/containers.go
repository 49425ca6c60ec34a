// Package containers defines container records: the metadata of a
// container (its image, runtime, spec, snapshot) as opposed to its running
// task.
package containers

import (
	"context"
	"time"

	"github.com/containerd/typeurl/v2"
)

// RuntimeInfo names the runtime (shim) and its options.
type RuntimeInfo struct {
	Name    string
	Options typeurl.Any
}

// Container is one container record.
type Container struct {
	ID     string
	Labels map[string]string
	// Image is the name of the image the container was made from.
	Image   string
	Runtime RuntimeInfo
	// Spec is the OCI runtime spec, marshalled as an Any.
	Spec typeurl.Any
	// Snapshotter and SnapshotKey name the container's writable layer.
	Snapshotter string
	SnapshotKey string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// Extensions carry client-specific data (berth keeps its run options
	// here), each under its own key.
	Extensions map[string]typeurl.Any
	// SandboxID is the pod sandbox the container belongs to, for CRI.
	SandboxID string
}

// Store keeps container records in the namespace of the context.
type Store interface {
	Get(ctx context.Context, id string) (Container, error)
	// List returns containers matching any of filters: id, image,
	// runtime.name, snapshotter, labels.<key>, sandbox.
	List(ctx context.Context, filters ...string) ([]Container, error)
	Create(ctx context.Context, c Container) (Container, error)
	// Update changes the fields named in fieldpaths ("labels",
	// "labels.<key>", "spec", "image", "snapshotkey", "extensions",
	// "extensions.<key>"); none means labels, spec, image, snapshotkey and
	// extensions. Runtime and snapshotter are immutable: naming them is
	// ErrInvalidArgument, as in containerd.
	Update(ctx context.Context, c Container, fieldpaths ...string) (Container, error)
	Delete(ctx context.Context, id string) error
}
