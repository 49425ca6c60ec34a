package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/internal/errgrpc"
	"github.com/berthd/berth/internal/testutil/require"
	snapshotsvc "github.com/berthd/berth/services/snapshots"
	"github.com/berthd/berth/snapshotters/native"
	"github.com/berthd/berth/snapshotters/testsuite"
)

// byName looks snapshotters up in m; unknown names give nil, which the
// service reports as not found.
func byName(m map[string]snapshots.Snapshotter) snapshotsvc.Lookup {
	return func(name string) (snapshots.Snapshotter, error) { return m[name], nil }
}

// requestContext does what berthd's interceptor does with the headers.
func requestContext(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(namespaces.GRPCHeader); len(v) > 0 {
		ctx = namespaces.WithNamespace(ctx, v[0])
	}
	if v := md.Get(leases.GRPCHeader); len(v) > 0 {
		ctx = leases.WithLease(ctx, v[0])
	}
	return ctx
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s contextStream) Context() context.Context { return s.ctx }

// serve serves svc on a new unix socket at path, with the daemon's header
// and error handling, plus any extra unary interceptors.
func serve(path string, svc *snapshotsvc.Service, extra ...grpc.UnaryServerInterceptor) (*grpc.Server, error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	unary := append([]grpc.UnaryServerInterceptor{
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(requestContext(ctx), req)
			return resp, errgrpc.ToGRPC(err)
		},
	}, extra...)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return errgrpc.ToGRPC(h(s, contextStream{ServerStream: ss, ctx: requestContext(ss.Context())}))
		}),
	)
	if err := svc.Register(srv); err != nil {
		l.Close()
		return nil, err
	}
	go srv.Serve(l)
	return srv, nil
}

// remote is a native snapshotter served in-process and a proxy to it.
type remote struct {
	dir    string // holds the socket
	path   string
	native *native.Snapshotter
	srv    *grpc.Server
	conn   *grpc.ClientConn
	proxy  *Snapshotter
	ex     *events.Exchange

	once sync.Once
	err  error
}

// startRemote serves a native snapshotter in root under the name
// "native", publishing events on ex when it is not nil, and connects a
// proxy to it.
func startRemote(root string, ex *events.Exchange, extra ...grpc.UnaryServerInterceptor) (r *remote, err error) {
	r = &remote{ex: ex}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.dir, err = os.MkdirTemp("", "b-"); err != nil {
		return nil, err
	}
	r.path = filepath.Join(r.dir, "s.sock")
	if r.native, err = native.New(root); err != nil {
		return nil, err
	}
	var pub events.Publisher
	if ex != nil {
		pub = ex
	}
	svc := snapshotsvc.New(byName(map[string]snapshots.Snapshotter{"native": r.native}), pub)
	if r.srv, err = serve(r.path, svc, extra...); err != nil {
		return nil, err
	}
	if r.conn, err = dial(r.path); err != nil {
		return nil, err
	}
	r.proxy = New(r.conn, "native")
	r.proxy.conn = r.conn
	return r, nil
}

// close stops everything startRemote started; it may be called again.
func (r *remote) close() error {
	r.once.Do(func() {
		if r.proxy != nil {
			r.err = r.proxy.Close()
		}
		if r.srv != nil {
			r.srv.Stop()
		}
		if r.native != nil {
			r.err = errors.Join(r.err, r.native.Close())
		}
		if r.dir != "" {
			r.err = errors.Join(r.err, os.RemoveAll(r.dir))
		}
	})
	return r.err
}

func newRemote(t *testing.T, ex *events.Exchange, extra ...grpc.UnaryServerInterceptor) *remote {
	t.Helper()
	r, err := startRemote(t.TempDir(), ex, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// inProcess is the suite's snapshotter: a proxy to a native snapshotter
// served by this test process over a real unix socket.
func inProcess(_ context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	r, err := startRemote(root, nil)
	if err != nil {
		return nil, nil, err
	}
	return r.proxy, r.close, nil
}

// buildSnapshotter builds cmd/berth-native-snapshotter into a temporary
// folder.
func buildSnapshotter(t *testing.T) string {
	t.Helper()
	goBin := require.Binary(t, "go", filepath.Join(os.Getenv("GOROOT"), "bin", "go"), "/usr/local/go/bin/go")
	bin := filepath.Join(t.TempDir(), "berth-native-snapshotter")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/berthd/berth/cmd/berth-native-snapshotter")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build berth-native-snapshotter: %v\n%s", err, out)
	}
	return bin
}

// process is a running berth-native-snapshotter and a proxy to it.
type process struct {
	cmd    *exec.Cmd
	done   chan error
	stderr bytes.Buffer
	dir    string
	path   string
	proxy  *Snapshotter

	once sync.Once
	err  error
}

// startProcess runs the binary on root with a socket in a new temporary
// folder and waits until the socket accepts connections.
func startProcess(bin, root string) (p *process, err error) {
	p = &process{done: make(chan error, 1)}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.dir, err = os.MkdirTemp("", "b-"); err != nil {
		return nil, err
	}
	p.path = filepath.Join(p.dir, "s.sock")
	p.cmd = exec.Command(bin, "--root", root, "--address", p.path, "--log-level", "debug")
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.done <- p.cmd.Wait() }()
	if err := p.waitSocket(); err != nil {
		return nil, err
	}
	conn, err := dial(p.path)
	if err != nil {
		return nil, err
	}
	p.proxy = New(conn, "anything")
	p.proxy.conn = conn
	return p, nil
}

func (p *process) waitSocket() error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("berth-native-snapshotter exited at start: %v\n%s", err, p.stderr.String())
		default:
		}
		// The file appears at bind, a moment before the socket listens.
		if c, err := net.Dial("unix", p.path); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("berth-native-snapshotter did not serve on %s within 20s", p.path)
}

// close sends SIGTERM and checks the process exits cleanly and removes
// its socket. It may be called again.
func (p *process) close() error {
	p.once.Do(func() {
		if p.proxy != nil {
			p.err = p.proxy.Close()
		}
		if p.cmd != nil && p.cmd.Process != nil {
			p.err = errors.Join(p.err, p.stop())
		}
		if p.dir != "" {
			p.err = errors.Join(p.err, os.RemoveAll(p.dir))
		}
	})
	return p.err
}

func (p *process) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("berth-native-snapshotter did not stop within 30s of SIGTERM\n%s", p.stderr.String())
	}
	if err != nil {
		return fmt.Errorf("berth-native-snapshotter exited with %v on SIGTERM\n%s", err, p.stderr.String())
	}
	if _, err := os.Stat(p.path); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("socket %s left behind after SIGTERM: %v", p.path, err)
	}
	return nil
}

// overBinary is the suite's snapshotter for the real binary: each
// open starts the process on the root, each close stops it.
func overBinary(bin string) testsuite.NewFunc {
	return func(_ context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		p, err := startProcess(bin, root)
		if err != nil {
			return nil, nil, err
		}
		return p.proxy, p.close, nil
	}
}
