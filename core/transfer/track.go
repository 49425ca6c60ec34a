package transfer

import (
	"context"
	"sync/atomic"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/mount"
)

// The unpacker is shared by every pull, so a pull cannot hand it a progress
// callback; instead the pull's context carries its tracker, and the store
// and applier the unpacker is built on (TrackReads, TrackApplies) report to
// whatever tracker the context of each call carries.

type trackerKey struct{}

func withTracker(ctx context.Context, t *tracker) context.Context {
	if t == nil {
		return ctx
	}
	return context.WithValue(ctx, trackerKey{}, t)
}

func trackerFrom(ctx context.Context) *tracker {
	t, _ := ctx.Value(trackerKey{}).(*tracker)
	return t
}

// aheadOf is the background layer work of t's pull, if any.
func (t *tracker) aheadOf() *ahead {
	if t == nil {
		return nil
	}
	return t.ahead
}

// TrackReads wraps the content store an applier reads layers from, so that
// reads of a layer blob made for a pull report "extracting" progress to
// that pull. Reads under contexts of no pull pass straight through.
func TrackReads(store content.Store) content.Store {
	return &readTracker{Store: store}
}

type readTracker struct {
	content.Store
}

func (r *readTracker) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	t := trackerFrom(ctx)
	if t == nil || !images.IsLayerType(desc.MediaType) {
		return r.Store.ReaderAt(ctx, desc)
	}
	// The layer inflated ahead of its turn, if it was.
	ra, ok := t.aheadOf().open(ctx, desc)
	if !ok {
		var err error
		if ra, err = r.Store.ReaderAt(ctx, desc); err != nil {
			return nil, err
		}
	}
	t.extracting(desc, 0)
	return &countingReaderAt{ReaderAt: ra, desc: desc, t: t}, nil
}

// countingReaderAt reports the share of the layer read, as bytes of the
// blob (the plain tar read instead of a blob is longer: its offsets are
// scaled). Appliers read layers front to back, so the furthest offset read
// is what was consumed.
type countingReaderAt struct {
	content.ReaderAt
	desc ocispec.Descriptor
	t    *tracker
	max  atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.ReaderAt.ReadAt(p, off)
	if end := off + int64(n); n > 0 && end > c.max.Load() {
		c.max.Store(end)
		if size := c.ReaderAt.Size(); size > 0 && size != c.desc.Size {
			end = int64(float64(end) / float64(size) * float64(c.desc.Size))
		}
		c.t.extracting(c.desc, end)
	}
	return n, err
}

// TrackApplies wraps an applier so that a layer applied for a pull is
// reported "extracted" to that pull once Apply succeeds.
func TrackApplies(a diff.Applier) diff.Applier {
	return &applyTracker{Applier: a}
}

type applyTracker struct {
	diff.Applier
}

func (a *applyTracker) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispec.Descriptor, error) {
	t := trackerFrom(ctx)
	out, staged, err := t.aheadOf().applyStaged(ctx, desc, mounts, opts)
	if !staged {
		out, err = a.Applier.Apply(ctx, desc, mounts, opts...)
	}
	t.aheadOf().done(desc)
	if err == nil {
		t.extracted(desc)
	}
	return out, err
}
