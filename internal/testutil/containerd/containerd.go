// Package containerd runs Debian's containerd (1.6) in a temporary folder
// for tests that check berth's output against the reference consumer, and
// drives it with Debian's ctr.
package containerd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testutil/require"
)

// Daemon is one private containerd.
type Daemon struct {
	t testing.TB
	// Dir holds everything the daemon makes; tests may put files there.
	Dir string
	// Sock is its gRPC socket.
	Sock string
	// Namespace is the one Run and Must work in.
	Namespace string
	ctr       string
	cmd       *exec.Cmd
}

// Start starts a containerd working in namespace and stops it, removing
// every mount and file it made, when the test ends. It needs root and
// Debian's containerd, ctr, containerd-shim-runc-v2 and runc.
func Start(t testing.TB, namespace string) *Daemon {
	t.Helper()
	require.Root(t)
	bin := require.Binary(t, "containerd")
	d := &Daemon{t: t, Namespace: namespace, ctr: require.Binary(t, "ctr")}
	require.Binary(t, "containerd-shim-runc-v2")
	require.Binary(t, "runc")
	// Short, so the socket path fits in sun_path.
	dir, err := os.MkdirTemp("", "b-")
	if err != nil {
		t.Fatal(err)
	}
	d.Dir, d.Sock = dir, filepath.Join(dir, "c.sock")
	t.Cleanup(d.stop)
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.Sock, d.Sock+".ttrpc")
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	d.cmd = exec.Command(bin, "--config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	// Wait until the API answers or the daemon gives up.
	for i := 0; ; i++ {
		if _, err := d.Run("version"); err == nil {
			return d
		}
		if i == 300 {
			d.Log()
			t.Fatal("containerd did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log copies the daemon's log into the test's.
func (d *Daemon) Log() {
	data, _ := os.ReadFile(filepath.Join(d.Dir, "containerd.log"))
	d.t.Logf("containerd log:\n%s", data)
}

// Run runs ctr against the daemon in its namespace.
func (d *Daemon) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.ctr, append([]string{"--address", d.Sock, "--namespace", d.Namespace}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// Must runs ctr and fails the test if it fails.
func (d *Daemon) Must(args ...string) string {
	d.t.Helper()
	out, err := d.Run(args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// stop ends the daemon and removes every mount and file it made.
func (d *Daemon) stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
			<-done
		}
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(d.Dir))
	if err != nil {
		d.t.Errorf("list mounts: %v", err)
	}
	slices.SortFunc(mounts, func(a, b *mountinfo.Info) int { return len(b.Mountpoint) - len(a.Mountpoint) })
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil {
			d.t.Errorf("unmount %s: %v", m.Mountpoint, err)
		}
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		d.t.Errorf("remove %s: %v", d.Dir, err)
	}
}
