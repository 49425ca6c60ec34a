// Package images defines image records and the helpers that walk an
// image's content: index → platform manifest → config and layers.
package images

import (
	"context"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a name pointing at a root descriptor (an index or a manifest).
type Image struct {
	// Name is the full reference, e.g. "docker.io/library/busybox:latest".
	Name   string
	Labels map[string]string
	// Target is the root of the image's content graph.
	Target    ocispec.Descriptor
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DeleteOptions change how Delete behaves.
type DeleteOptions struct {
	// Synchronous runs garbage collection before Delete returns.
	Synchronous bool
	// Target, when set, makes Delete fail unless the image points there.
	Target *ocispec.Descriptor
}

// DeleteOpt sets a DeleteOptions field.
type DeleteOpt func(context.Context, *DeleteOptions) error

// SynchronousDelete makes Delete wait for garbage collection.
func SynchronousDelete() DeleteOpt {
	return func(_ context.Context, o *DeleteOptions) error {
		o.Synchronous = true
		return nil
	}
}

// DeleteTarget makes Delete conditional on the image's target.
func DeleteTarget(desc *ocispec.Descriptor) DeleteOpt {
	return func(_ context.Context, o *DeleteOptions) error {
		o.Target = desc
		return nil
	}
}

// Store keeps image records in the namespace of the context. Errors:
// ErrNotFound, ErrAlreadyExists (Create of a taken name), ErrInvalidArgument
// (bad name, labels or target).
type Store interface {
	Get(ctx context.Context, name string) (Image, error)
	// List returns images matching any of filters: name, target.digest,
	// target.mediatype, labels.<key>, with containerd's filter syntax.
	List(ctx context.Context, filters ...string) ([]Image, error)
	Create(ctx context.Context, image Image) (Image, error)
	// Update changes the fields named in fieldpaths ("labels",
	// "labels.<key>", "target"); none means labels and target.
	Update(ctx context.Context, image Image, fieldpaths ...string) (Image, error)
	Delete(ctx context.Context, name string, opts ...DeleteOpt) error
}
