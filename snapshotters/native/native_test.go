package native

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

func TestNative(t *testing.T) {
	testsuite.Run(t, "native", newSnapshotter())
}

func BenchmarkNative(b *testing.B) {
	testsuite.Bench(b, "native", newSnapshotter())
}
