package overlay

import (
	"testing"

	"github.com/berthd/berth/snapshotters/testsuite"
)

func TestOverlay(t *testing.T) {
	testsuite.Run(t, "overlay", testsuite.Open(New))
}

func TestOverlaySyncRemove(t *testing.T) {
	testsuite.Run(t, "overlay-sync", testsuite.Open(New, WithSyncRemove()))
}

func BenchmarkOverlay(b *testing.B) {
	testsuite.Bench(b, "overlay", testsuite.Open(New))
}
