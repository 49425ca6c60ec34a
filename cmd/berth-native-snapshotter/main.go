// Command berth-native-snapshotter is an external snapshotter: it serves
// berth's native (copy-based) snapshotter over the containerd snapshots
// gRPC API on a unix socket. berthd uses it through a proxy plugin:
//
//	[proxy_plugins.mynative]
//	type = "snapshot"
//	address = "/run/berth-native-snapshotter/snapshotter.sock"
//
// It answers to any snapshotter name in requests, since the name is the one
// berthd's configuration chose. SIGTERM or SIGINT stops it: in-flight calls
// finish, the snapshotter is closed and the socket removed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/internal/errgrpc"
	snapshotsvc "github.com/berthd/berth/services/snapshots"
	"github.com/berthd/berth/snapshotters/native"
)

// gracePeriod bounds how long a stop waits for in-flight calls.
const gracePeriod = 10 * time.Second

type options struct {
	root       string
	address    string
	logLevel   string
	syncRemove bool
}

func main() {
	var o options
	fs := flag.NewFlagSet("berth-native-snapshotter", flag.ExitOnError)
	fs.StringVar(&o.root, "root", "/var/lib/berth-native-snapshotter", "folder keeping the snapshots")
	fs.StringVar(&o.address, "address", "/run/berth-native-snapshotter/snapshotter.sock", "unix socket to serve the snapshots API on")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.syncRemove, "sync-remove", false, "delete a removed snapshot's data before Remove returns")
	fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "berth-native-snapshotter: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "berth-native-snapshotter: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", o.logLevel, err)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	// Catch signals before the socket exists, so a stop requested as soon
	// as it appears still closes the snapshotter and removes the socket.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	var opts []native.Opt
	if o.syncRemove {
		opts = append(opts, native.WithSyncRemove())
	}
	sn, err := native.New(o.root, opts...)
	if err != nil {
		return fmt.Errorf("open snapshotter in %s: %w", o.root, err)
	}
	defer sn.Close()

	l, err := listen(o.address)
	if err != nil {
		return err
	}
	defer os.Remove(o.address)

	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(unaryInterceptor),
		grpc.ChainStreamInterceptor(streamInterceptor),
	)
	lookup := func(string) (snapshots.Snapshotter, error) { return sn, nil }
	if err := snapshotsvc.New(lookup, nil).Register(srv); err != nil {
		l.Close()
		return err
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	slog.Info("serving native snapshotter", "address", o.address, "root", o.root)

	select {
	case sig := <-sigs:
		slog.Info("stopping", "signal", sig.String())
		stop(srv)
		<-served
		return nil
	case err := <-served:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("serve on %s: %w", o.address, err)
	}
}

// stop lets in-flight calls finish, up to gracePeriod.
func stop(srv *grpc.Server) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(gracePeriod):
		slog.Warn("in-flight calls did not finish in time; closing them", "grace", gracePeriod)
		srv.Stop()
		<-done
	}
}

// requestContext copies the namespace and lease headers into ctx, as berthd
// does, for snapshotters that look at them; then errors leave as statuses.
func requestContext(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	if v := md.Get(namespaces.GRPCHeader); len(v) > 0 {
		ctx = namespaces.WithNamespace(ctx, v[0])
	}
	if v := md.Get(leases.GRPCHeader); len(v) > 0 {
		ctx = leases.WithLease(ctx, v[0])
	}
	return ctx
}

func unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(requestContext(ctx), req)
	if err != nil {
		slog.Debug("call failed", "method", info.FullMethod, "error", err)
	}
	return resp, errgrpc.ToGRPC(err)
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s contextStream) Context() context.Context { return s.ctx }

func streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, contextStream{ServerStream: ss, ctx: requestContext(ss.Context())})
	if err != nil {
		slog.Debug("call failed", "method", info.FullMethod, "error", err)
	}
	return errgrpc.ToGRPC(err)
}
