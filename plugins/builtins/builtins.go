// Package builtins links every built-in plugin into berthd.
package builtins

import (
	_ "github.com/berthd/berth/plugins/berthcontainers"
	_ "github.com/berthd/berth/plugins/content"
	_ "github.com/berthd/berth/plugins/defaults"
	_ "github.com/berthd/berth/plugins/diff"
	_ "github.com/berthd/berth/plugins/events"
	_ "github.com/berthd/berth/plugins/grpcapi"
	_ "github.com/berthd/berth/plugins/metadata"
	_ "github.com/berthd/berth/plugins/network"
	_ "github.com/berthd/berth/plugins/runtime"
	_ "github.com/berthd/berth/plugins/snapshotters"
	_ "github.com/berthd/berth/plugins/transfer"
	_ "github.com/berthd/berth/plugins/volumes"
	_ "github.com/berthd/berth/snapshotters/proxy"
)
