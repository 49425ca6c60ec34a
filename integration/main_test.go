// Package integration drives real berthd processes through the berth CLI,
// Debian's ctr and the gRPC API.
package integration

import (
	"os"
	"testing"

	"github.com/berthd/berth/internal/testutil/daemon"
)

func TestMain(m *testing.M) {
	code := m.Run()
	daemon.CleanupBuild()
	os.Exit(code)
}
