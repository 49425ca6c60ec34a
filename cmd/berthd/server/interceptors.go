package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/internal/errgrpc"
)

var (
	rpcHandled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "berthd", Name: "grpc_handled_total",
		Help: "gRPC calls completed, by method and status code.",
	}, []string{"method", "code"})
	rpcSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "berthd", Name: "grpc_handling_seconds",
		Help:    "Time to complete gRPC calls, by method.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"method"})
)

func init() {
	prometheus.MustRegister(rpcHandled, rpcSeconds)
}

// withRequestContext copies the namespace and lease headers into ctx, where
// core packages find them without knowing about gRPC.
func withRequestContext(ctx context.Context) context.Context {
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

func observe(method string, start time.Time, err error) error {
	err = errgrpc.ToGRPC(err)
	code := errgrpc.Code(err)
	rpcHandled.WithLabelValues(method, code.String()).Inc()
	rpcSeconds.WithLabelValues(method).Observe(time.Since(start).Seconds())
	if err != nil {
		slog.Debug("call failed", "method", method, "code", code.String(), "error", err)
	}
	return err
}

func unaryInterceptors() []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := handler(withRequestContext(ctx), req)
			return resp, observe(info.FullMethod, start, err)
		},
	}
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s contextStream) Context() context.Context { return s.ctx }

func streamInterceptors() []grpc.StreamServerInterceptor {
	return []grpc.StreamServerInterceptor{
		func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			start := time.Now()
			err := handler(srv, contextStream{ServerStream: ss, ctx: withRequestContext(ss.Context())})
			return observe(info.FullMethod, start, err)
		},
	}
}

// ttrpcInterceptor does for shim calls what the gRPC interceptors do.
func ttrpcInterceptor(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	if md, ok := ttrpc.GetMetadata(ctx); ok {
		if v := md[namespaces.TTRPCHeader]; len(v) > 0 {
			ctx = namespaces.WithNamespace(ctx, v[0])
		}
	}
	resp, err := method(ctx, unmarshal)
	return resp, errgrpc.ToGRPC(err)
}
