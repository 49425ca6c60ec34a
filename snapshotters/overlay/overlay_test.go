package overlay

import (
	"context"
	"testing"

	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/snapshotters/testsuite"
)

func newSnapshotter(opts ...Opt) testsuite.NewFunc {
	return func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		s, err := New(root, opts...)
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	}
}

func TestOverlay(t *testing.T) {
	testsuite.Run(t, "overlay", newSnapshotter())
}

func TestOverlaySyncRemove(t *testing.T) {
	testsuite.Run(t, "overlay-sync", newSnapshotter(WithSyncRemove()))
}

func BenchmarkOverlay(b *testing.B) {
	testsuite.Bench(b, "overlay", newSnapshotter())
}
