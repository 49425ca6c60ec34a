package proxy

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berthd/berth/plugins"
)

// ProxyKind is the [proxy_plugins.<name>] type this package serves.
const ProxyKind = "snapshot"

func init() {
	plugins.RegisterProxyType(ProxyKind, Registration)
}

// reconnect bounds the wait between attempts to reach a remote snapshotter
// that is down. gRPC's default grows to two minutes, which would keep a
// restarted snapshotter unusable long after it is back.
var reconnect = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  100 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   2 * time.Second,
	},
	MinConnectTimeout: 5 * time.Second,
}

// Registration is the plugin io.containerd.snapshotter.v1.<name> for the
// external snapshotter serving the snapshots API on the unix socket at
// address. Its instance is a *Snapshotter forwarding to the remote
// snapshotter called name.
//
// The connection is made lazily, as containerd does: init never waits for
// the socket, so a snapshotter process that is missing, slow or started
// after berthd cannot hold up berthd's start, and one that restarts is
// reached again without restarting berthd. Until it answers, calls fail at
// once with errdefs.ErrUnavailable naming the plugin and its address, and
// init logs a warning when the socket does not exist yet.
func Registration(name, address string) *plugins.Registration {
	return &plugins.Registration{
		Type: plugins.SnapshotPlugin,
		ID:   name,
		InitFn: func(ic *plugins.InitContext) (any, error) {
			if strings.ContainsAny(name, ". /") || name == "" {
				return nil, fmt.Errorf("proxy plugin name %q: must be non-empty without '.', ' ' or '/'", name)
			}
			path, err := socketPath(address)
			if err != nil {
				return nil, fmt.Errorf("proxy plugin %s: %w", name, err)
			}
			if _, err := os.Stat(path); err != nil {
				slog.Warn("external snapshotter is not serving yet; its calls fail until it does",
					"plugin", name, "address", path, "error", err)
			}
			conn, err := dial(path)
			if err != nil {
				return nil, fmt.Errorf("proxy plugin %s: %w", name, err)
			}
			ic.Meta.Platforms = []ocispec.Platform{platforms.DefaultSpec()}
			ic.Meta.Exports["address"] = path
			sn := New(conn, name)
			sn.conn = conn
			return sn, nil
		},
	}
}

// socketPath checks address is a usable unix socket path and makes it
// absolute, so berthd's working directory does not matter.
func socketPath(address string) (string, error) {
	if address == "" {
		return "", fmt.Errorf("address is empty")
	}
	path, err := filepath.Abs(strings.TrimPrefix(address, "unix://"))
	if err != nil {
		return "", fmt.Errorf("address %q: %w", address, err)
	}
	// sun_path holds 108 bytes, the terminating NUL included.
	if len(path) > 107 {
		return "", fmt.Errorf("address %s is %d bytes, longer than a unix socket path may be (107)", path, len(path))
	}
	return path, nil
}

// dial returns a client connection to the unix socket at path without
// connecting: gRPC connects on the first call and reconnects after
// failures.
func dial(path string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(reconnect),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	return conn, nil
}
