package images

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/berthd/berth/core/content"
)

var (
	// ErrSkipDesc, returned by a handler, skips the descriptor's children
	// without failing the walk.
	ErrSkipDesc = errors.New("skip descriptor")
	// ErrStopHandler, returned by one of the handlers given to Handlers,
	// stops the chain for that descriptor; the children collected so far
	// are kept.
	ErrStopHandler = errors.New("stop handler")
)

// Handler handles one descriptor of a content graph and returns the
// children to visit next.
type Handler interface {
	Handle(ctx context.Context, desc ocispec.Descriptor) (children []ocispec.Descriptor, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return f(ctx, desc)
}

// Handlers runs handlers in order on each descriptor and returns the
// children all of them returned, in that order.
func Handlers(handlers ...Handler) HandlerFunc {
	return func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		var children []ocispec.Descriptor
		for _, h := range handlers {
			ch, err := h.Handle(ctx, desc)
			if err != nil {
				if errors.Is(err, ErrStopHandler) {
					break
				}
				return nil, err
			}
			children = append(children, ch...)
		}
		return children, nil
	}
}

// Walk visits descs and everything their handler returns, depth first and
// in order, one descriptor at a time. A digest is handled once per Walk
// even when several parents refer to it.
func Walk(ctx context.Context, handler Handler, descs ...ocispec.Descriptor) error {
	seen := map[digest.Digest]bool{}
	var walk func([]ocispec.Descriptor) error
	walk = func(descs []ocispec.Descriptor) error {
		for _, desc := range descs {
			if seen[desc.Digest] {
				continue
			}
			seen[desc.Digest] = true
			if err := ctx.Err(); err != nil {
				return err
			}
			children, err := handler.Handle(ctx, desc)
			if err != nil {
				if errors.Is(err, ErrSkipDesc) {
					continue
				}
				return err
			}
			if err := walk(children); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(descs)
}

// Dispatch visits descs and everything their handler returns like Walk,
// but runs up to limit handler calls at once (limit < 1 means one). The
// first error cancels the context of the others and is returned. A digest
// is handled once per Dispatch.
func Dispatch(ctx context.Context, handler Handler, limit int, descs ...ocispec.Descriptor) error {
	d := &dispatcher{handler: handler, slots: make(chan struct{}, max(limit, 1))}
	return d.dispatch(ctx, descs)
}

type dispatcher struct {
	handler Handler
	slots   chan struct{}
	seen    sync.Map
}

func (d *dispatcher) dispatch(ctx context.Context, descs []ocispec.Descriptor) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, desc := range descs {
		if _, dup := d.seen.LoadOrStore(desc.Digest, true); dup {
			continue
		}
		g.Go(func() error {
			children, err := d.handle(ctx, desc)
			if err != nil {
				if errors.Is(err, ErrSkipDesc) {
					return nil
				}
				return err
			}
			if len(children) == 0 {
				return nil
			}
			// The slot is free again here: a parent waiting for its
			// children must not hold one, or deep graphs would deadlock.
			return d.dispatch(ctx, children)
		})
	}
	return g.Wait()
}

func (d *dispatcher) handle(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-d.slots }()
	return d.handler.Handle(ctx, desc)
}

// ChildrenHandler returns each descriptor's children as read from
// provider (see Children).
func ChildrenHandler(provider content.Provider) HandlerFunc {
	return func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		return Children(ctx, provider, desc)
	}
}

// FilterPlatforms drops the children of an index whose descriptor names a
// platform m does not match; children without a platform are kept.
func FilterPlatforms(h Handler, m platforms.Matcher) HandlerFunc {
	return func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		children, err := h.Handle(ctx, desc)
		if err != nil || !IsIndexType(desc.MediaType) {
			return children, err
		}
		return matching(children, m), nil
	}
}

// LimitManifests keeps, of an index's children, the n best matches for
// mc (children without a platform rank last). It filters like
// FilterPlatforms first.
func LimitManifests(h Handler, mc platforms.MatchComparer, n int) HandlerFunc {
	return func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		children, err := h.Handle(ctx, desc)
		if err != nil || !IsIndexType(desc.MediaType) {
			return children, err
		}
		children = rank(matching(children, mc), mc)
		if n > 0 && len(children) > n {
			children = children[:n]
		}
		return children, nil
	}
}

func matching(descs []ocispec.Descriptor, m platforms.Matcher) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, d := range descs {
		if d.Platform == nil || m.Match(*d.Platform) {
			out = append(out, d)
		}
	}
	return out
}

// rank orders descriptors best platform match first; those without a
// platform keep their order after all others.
func rank(descs []ocispec.Descriptor, mc platforms.MatchComparer) []ocispec.Descriptor {
	sort.SliceStable(descs, func(i, j int) bool {
		if descs[i].Platform == nil {
			return false
		}
		if descs[j].Platform == nil {
			return true
		}
		return mc.Less(*descs[i].Platform, *descs[j].Platform)
	})
	return descs
}

// ErrNoMatch is wrapped (beside errdefs.ErrNotFound) by ResolveManifest
// when the image has no manifest for the platform, to tell that apart from
// content that is missing. Inside the search it marks a subtree without a
// match, so the next candidate is tried instead of failing.
var ErrNoMatch = errors.New("no manifest matches the platform")

func noMatch(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrNoMatch)
}
