package proxy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/internal/testutil/require"
	"github.com/berthd/berth/plugins"
	snapshotsvc "github.com/berthd/berth/services/snapshots"
	"github.com/berthd/berth/snapshotters/native"
)

// initPlugin builds the registration berthd would for
// [proxy_plugins.<name>] and runs its init.
func initPlugin(t *testing.T, name, address string) (*plugins.InitContext, any, error) {
	t.Helper()
	factory := plugins.ProxyType("snapshot")
	if factory == nil {
		t.Fatal("no proxy factory registered for type snapshot")
	}
	reg := factory(name, address)
	if reg.Type != plugins.SnapshotPlugin || reg.ID != name {
		t.Fatalf("registration %s, want %s.%s", reg.URI(), plugins.SnapshotPlugin, name)
	}
	dir := t.TempDir()
	ic := plugins.NewContext(context.Background(), reg, plugins.NewSet(), filepath.Join(dir, "root"), filepath.Join(dir, "state"), nil, nil)
	inst, err := reg.InitFn(ic)
	return ic, inst, err
}

// TestPluginLazyConnect starts the plugin before anything serves its
// socket: init succeeds, calls fail as unavailable naming the address,
// and once the snapshotter serves, the same instance works.
func TestPluginLazyConnect(t *testing.T) {
	require.Root(t)
	dir, err := os.MkdirTemp("", "b-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")

	ic, inst, err := initPlugin(t, "ext", path)
	if err != nil {
		t.Fatalf("init with nothing serving: %v", err)
	}
	sn, ok := inst.(*Snapshotter)
	if !ok {
		t.Fatalf("instance is %T, want *Snapshotter", inst)
	}
	defer func() {
		if err := sn.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := sn.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	}()
	var _ snapshots.Cleaner = sn
	if got := ic.Meta.Exports["address"]; got != path {
		t.Errorf("exported address %q, want %q", got, path)
	}
	if len(ic.Meta.Platforms) == 0 {
		t.Error("no platform in the plugin's meta")
	}

	ctx := context.Background()
	_, err = sn.Stat(ctx, "x")
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"ext"`) {
		t.Errorf("stat with nothing serving: %v; want unavailable naming the plugin and %s", err, path)
	}

	nat, err := native.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	srv, err := serve(path, snapshotsvc.New(byName(map[string]snapshots.Snapshotter{"ext": nat}), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	// gRPC reconnects after its backoff; poll until the call gets through.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = sn.Stat(ctx, "x")
		if !errors.Is(err, errdefs.ErrUnavailable) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("stat once the snapshotter serves: %v, want not found", err)
	}
	if _, err := sn.Prepare(ctx, "x", ""); err != nil {
		t.Fatalf("prepare through the plugin: %v", err)
	}
	if info, err := nat.Stat(ctx, "x"); err != nil || info.Kind != snapshots.KindActive {
		t.Errorf("remote snapshotter has %+v, %v", info, err)
	}
}

func TestPluginBadConfig(t *testing.T) {
	for name, address := range map[string]string{
		"a.b":  "/run/x.sock",
		"ok":   "",
		"long": "/" + strings.Repeat("x", 120),
	} {
		if _, _, err := initPlugin(t, name, address); err == nil {
			t.Errorf("init of %q at %q succeeded", name, address)
		}
	}
}
