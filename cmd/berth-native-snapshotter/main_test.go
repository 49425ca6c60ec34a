package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	api "github.com/containerd/containerd/api/services/snapshots/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/berthd/berth/internal/testutil/require"
)

// built is the binary, built once for every test of the package.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

func build(t *testing.T) string {
	t.Helper()
	goBin := require.Binary(t, "go", filepath.Join(os.Getenv("GOROOT"), "bin", "go"), "/usr/local/go/bin/go")
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "berth-native-snapshotter-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "berth-native-snapshotter")
		if out, err := exec.Command(goBin, "build", "-o", built.path, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatalf("build: %v", built.err)
	}
	return built.path
}

// socketDir is a short temporary folder for sockets.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "b-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type proc struct {
	cmd    *exec.Cmd
	done   chan error
	stderr bytes.Buffer
}

// start runs the snapshotter and waits until it answers on address, or
// until it exits.
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// serving waits until address accepts connections; false when the
// process exited first.
func (p *proc) serving(t *testing.T, address string) bool {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			return false
		default:
		}
		if c, err := net.Dial("unix", address); err == nil {
			c.Close()
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("not serving on %s within 20s\n%s", address, p.stderr.String())
	return false
}

// exit waits for the process to end and returns its error.
func (p *proc) exit(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("still running after 30s\n%s", p.stderr.String())
	}
	return nil
}

func stat(t *testing.T, address string) error {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = api.NewSnapshotsClient(conn).Stat(ctx, &api.StatSnapshotRequest{Snapshotter: "any-name", Key: "missing"})
	return err
}

// TestServeAndStop checks the snapshotter answers under any name, with
// errors as gRPC codes, and that SIGTERM stops it cleanly and removes its
// socket; a second snapshotter on the same address is refused while the
// first runs.
func TestServeAndStop(t *testing.T) {
	require.Root(t)
	bin := build(t)
	dir := socketDir(t)
	address := filepath.Join(dir, "sub", "s.sock")
	root := t.TempDir()

	p := start(t, bin, "--root", root, "--address", address)
	if !p.serving(t, address) {
		t.Fatalf("exited at start\n%s", p.stderr.String())
	}
	if err := stat(t, address); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("stat of an unknown key: %v, want NotFound naming the key", err)
	}
	fi, err := os.Stat(address)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, %v; want 0660", fi.Mode().Perm(), err)
	}

	second := start(t, bin, "--root", t.TempDir(), "--address", address)
	if err := second.exit(t); err == nil || !strings.Contains(second.stderr.String(), "in use by another process") {
		t.Errorf("second snapshotter on the same address: %v\n%s", err, second.stderr.String())
	}
	if err := stat(t, address); status.Code(err) != codes.NotFound {
		t.Errorf("first snapshotter after the refused second: %v", err)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.exit(t); err != nil {
		t.Errorf("exit on SIGTERM: %v\n%s", err, p.stderr.String())
	}
	if _, err := os.Lstat(address); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
}

// TestStaleSocket checks a socket file nobody listens on is replaced.
func TestStaleSocket(t *testing.T) {
	require.Root(t)
	bin := build(t)
	address := filepath.Join(socketDir(t), "s.sock")
	l, err := net.Listen("unix", address)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	p := start(t, bin, "--root", t.TempDir(), "--address", address)
	if !p.serving(t, address) {
		t.Fatalf("exited with a stale socket in place\n%s", p.stderr.String())
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if err := p.exit(t); err != nil {
		t.Errorf("exit on SIGINT: %v\n%s", err, p.stderr.String())
	}
}

func TestBadArguments(t *testing.T) {
	bin := build(t)
	dir := socketDir(t)
	notSocket := filepath.Join(dir, "file")
	if err := os.WriteFile(notSocket, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--root", t.TempDir(), "--address", notSocket}, "is not a socket"},
		{[]string{"--root", t.TempDir(), "--address", "/" + strings.Repeat("x", 120)}, "longer than a unix socket path"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		out, err := exec.Command(bin, c.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%q: %v, output %q; want a failure saying %q", c.args, err, out, c.want)
		}
	}
	if _, err := os.Stat(notSocket); err != nil {
		t.Errorf("the file at --address was touched: %v", err)
	}
}
