package native

import (
	"testing"

	"github.com/berthd/berth/snapshotters/testsuite"
)

func TestNative(t *testing.T) {
	testsuite.Run(t, "native", testsuite.Open(New))
}

func BenchmarkNative(b *testing.B) {
	testsuite.Bench(b, "native", testsuite.Open(New))
}
