// Package daemon runs real berthd processes for end-to-end tests: each with
// its own temporary root, state and socket, so many run side by side, and
// each torn down leaving nothing behind.
package daemon

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berthd/berth/internal/testutil/require"
)

// Daemon is one running berthd.
type Daemon struct {
	t       testing.TB
	Dir     string // temporary folder holding everything below
	Root    string
	State   string
	Address string
	Config  string // path of the config file
	LogPath string
	// CNIConfDir is the daemon's own network configuration folder; its
	// default network gets a bridge and subnet of its own too, so
	// daemons never write to /etc or share a bridge.
	CNIConfDir string

	cmd  *exec.Cmd
	done chan error
	log  *os.File
	conn *grpc.ClientConn
	args []string
}

// Option changes how a daemon starts.
type Option func(*options)

type options struct {
	config  string
	network string
	args    []string
}

// WithConfig appends TOML to the daemon's config file.
func WithConfig(toml string) Option { return func(o *options) { o.config += "\n" + toml + "\n" } }

// WithNetworkConfig adds keys to the network plugin's section
// ([plugins."io.berth.network.v1.cni"]), which Start always writes.
func WithNetworkConfig(toml string) Option {
	return func(o *options) { o.network += "\n" + toml + "\n" }
}

// WithArgs adds command-line arguments.
func WithArgs(args ...string) Option { return func(o *options) { o.args = append(o.args, args...) } }

// Start starts a berthd and waits until it reports healthy. The daemon is
// stopped and its folders removed when the test ends; a mount left under
// its folders fails the test.
func Start(t testing.TB, opts ...Option) *Daemon {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dir, err := os.MkdirTemp("", "bt-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{
		t: t, Dir: dir,
		Root:       filepath.Join(dir, "root"),
		State:      filepath.Join(dir, "state"),
		Address:    filepath.Join(dir, "b.sock"),
		Config:     filepath.Join(dir, "config.toml"),
		LogPath:    filepath.Join(dir, "berthd.log"),
		CNIConfDir: filepath.Join(dir, "cni"),
	}
	cfg := fmt.Sprintf("version = 1\nroot = %q\nstate = %q\n[grpc]\naddress = %q\n%s%s", d.Root, d.State, d.Address, o.config, networkSection(d.CNIConfDir, o.network))
	if err := os.WriteFile(d.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d.args = append([]string{"--config", d.Config, "--log-level", "debug"}, o.args...)
	t.Cleanup(d.cleanup)
	if err := d.start(); err != nil {
		t.Fatalf("start berthd: %v\n%s", err, d.Logs())
	}
	return d
}

// networkSection keeps a test daemon's networks to itself: its own
// configuration folder, and a default network with a random bridge name
// and /24 (in 10.150.0.0-10.199.255.0) instead of berth0 and 10.88.0.0/16.
func networkSection(confDir, extra string) string {
	return fmt.Sprintf("[plugins.\"io.berth.network.v1.cni\"]\nconf_dir = %q\ndefault_bridge = \"bt%08x\"\ndefault_subnet = \"10.%d.%d.0/24\"\n%s",
		confDir, rand.Uint32(), 150+rand.IntN(50), rand.IntN(256), extra)
}

func (d *Daemon) start() error {
	log, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	d.log = log
	d.cmd = exec.Command(Binary(d.t, "berthd"), d.args...)
	d.cmd.Stdout = log
	d.cmd.Stderr = log
	// Its own process group, so a test's Ctrl-C does not reach it first.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(d.cmd, d.done)
	return d.waitHealthy(20 * time.Second)
}

func (d *Daemon) waitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			d.done <- err
			return fmt.Errorf("berthd exited before becoming healthy: %v", err)
		default:
		}
		if _, err := os.Stat(d.Address); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := healthpb.NewHealthClient(d.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("berthd not healthy after %s", limit)
}

// Conn returns a gRPC connection to the daemon (shared, closed at cleanup).
func (d *Daemon) Conn() *grpc.ClientConn {
	if d.conn == nil {
		conn, err := grpc.NewClient("unix://"+d.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			d.t.Fatal(err)
		}
		d.conn = conn
	}
	return d.conn
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stop sends SIGTERM and waits for a clean exit; the exit must be 0.
func (d *Daemon) Stop() {
	d.t.Helper()
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("berthd exited with %v on SIGTERM\n%s", err, d.Logs())
		}
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("berthd did not stop within 30s of SIGTERM\n%s", d.Logs())
	}
	d.cmd = nil
	d.closeConn()
}

// Kill kills the daemon with SIGKILL, as a crash would.
func (d *Daemon) Kill() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Kill()
	<-d.done
	d.cmd = nil
	d.closeConn()
}

// Restart starts the daemon again on the same folders.
func (d *Daemon) Restart() {
	d.t.Helper()
	if d.cmd != nil {
		d.Stop()
	}
	if err := d.start(); err != nil {
		d.t.Fatalf("restart berthd: %v\n%s", err, d.Logs())
	}
}

func (d *Daemon) closeConn() {
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	if d.log != nil {
		d.log.Close()
		d.log = nil
	}
}

// Logs returns what the daemon logged so far.
func (d *Daemon) Logs() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

func (d *Daemon) cleanup() {
	d.Stop()
	if d.t.Failed() {
		d.t.Logf("berthd log (%s):\n%s", d.LogPath, tail(d.Logs(), 200))
	}
	if leaked := MountsUnder(d.Dir); len(leaked) > 0 {
		d.t.Errorf("mounts left under %s after berthd stopped: %s", d.Dir, strings.Join(leaked, ", "))
		for i := len(leaked) - 1; i >= 0; i-- {
			syscall.Unmount(leaked[i], syscall.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		d.t.Errorf("remove daemon folder: %v", err)
	}
}

// MountsUnder lists the mount points at or below dir.
func MountsUnder(dir string) []string {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Result is the outcome of a command run by Berth or Ctr.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Combined is stdout then stderr.
func (r *Result) Combined() string { return r.Stdout + r.Stderr }

// Berth runs the berth CLI against this daemon.
func (d *Daemon) Berth(args ...string) *Result {
	d.t.Helper()
	return d.run(Binary(d.t, "berth"), append([]string{"--address", d.Address}, args...), nil)
}

// BerthIn runs the berth CLI with stdin.
func (d *Daemon) BerthIn(stdin string, args ...string) *Result {
	d.t.Helper()
	return d.run(Binary(d.t, "berth"), append([]string{"--address", d.Address}, args...), strings.NewReader(stdin))
}

// Ctr runs Debian's ctr against this daemon.
func (d *Daemon) Ctr(args ...string) *Result {
	d.t.Helper()
	return d.run(require.Binary(d.t, "ctr"), append([]string{"--address", d.Address}, args...), nil)
}

func (d *Daemon) run(bin string, args []string, stdin *strings.Reader) *Result {
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = stdin
	}
	err := cmd.Run()
	r := &Result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.ExitCode = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return r
}

// MustBerth runs berth and fails the test unless it exits 0.
func (d *Daemon) MustBerth(args ...string) string {
	d.t.Helper()
	r := d.Berth(args...)
	if r.ExitCode != 0 {
		d.t.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// MustCtr runs ctr and fails the test unless it exits 0.
func (d *Daemon) MustCtr(args ...string) string {
	d.t.Helper()
	r := d.Ctr(args...)
	if r.ExitCode != 0 {
		d.t.Fatalf("ctr %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binary returns the path of one of berth's own programs: from
// BERTH_BIN_DIR when set (make test-integration sets it), otherwise built
// once per test process from this tree.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv("BERTH_BIN_DIR"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("BERTH_BIN_DIR=%s has no %s: run 'make binaries'", dir, name)
		}
		return p
	}
	buildOnce.Do(func() {
		buildDir, buildErr = build()
	})
	if buildErr != nil {
		t.Fatalf("build berth binaries: %v", buildErr)
	}
	return filepath.Join(buildDir, name)
}

func build() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	top := filepath.Join(filepath.Dir(file), "..", "..", "..")
	dir, err := os.MkdirTemp("", "berth-bin-")
	if err != nil {
		return "", err
	}
	var cmds []string
	for _, name := range []string{"berthd", "berth", "berth-shim-runc-v2"} {
		if _, err := os.Stat(filepath.Join(top, "cmd", name)); err == nil {
			cmds = append(cmds, "./cmd/"+name)
		}
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, cmds...)...)
	cmd.Dir = top
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	return dir, nil
}

// CleanupBuild removes binaries Binary built; call it from TestMain.
func CleanupBuild() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// BerthCommand returns an unstarted berth command against this daemon, for
// tests that need to interrupt it.
func (d *Daemon) BerthCommand(args ...string) *exec.Cmd {
	return exec.Command(Binary(d.t, "berth"), append([]string{"--address", d.Address}, args...)...)
}
