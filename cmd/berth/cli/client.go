package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/internal/errgrpc"
)

// Client is a connection to berthd that adds the namespace to every call
// and turns gRPC statuses back into errdefs errors.
type Client struct {
	conn      *grpc.ClientConn
	namespace string
	address   string
}

// maxMsgSize matches berthd's default limits.
const maxMsgSize = 16 << 20

// Dial connects to berthd at address (a unix socket path).
func Dial(address, namespace string) (*Client, error) {
	c := &Client{namespace: namespace, address: address}
	ns := func(ctx context.Context) context.Context {
		if _, ok := metadata.FromOutgoingContext(ctx); ok {
			if v := metadata.ValueFromOutgoingContext(ctx, namespaces.GRPCHeader); len(v) > 0 {
				return ctx
			}
		}
		return metadata.AppendToOutgoingContext(ctx, namespaces.GRPCHeader, c.namespace)
	}
	conn, err := grpc.NewClient("passthrough:///"+address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", address)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return errgrpc.ToNative(invoker(ns(ctx), method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ns(ctx), desc, cc, method, opts...)
			if err != nil {
				return nil, errgrpc.ToNative(err)
			}
			return nativeStream{s}, nil
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to berthd at %s: %w", address, err)
	}
	c.conn = conn
	return c, nil
}

// nativeStream converts a stream's errors like unary calls'.
type nativeStream struct{ grpc.ClientStream }

func (s nativeStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && err.Error() != "EOF" {
		return errgrpc.ToNative(err)
	}
	return err
}

func (s nativeStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil && err.Error() != "EOF" {
		return errgrpc.ToNative(err)
	}
	return err
}

// Conn is the underlying connection, for generated API clients.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Namespace is the namespace calls are made in.
func (c *Client) Namespace() string { return c.namespace }

// WithNamespace returns ctx making calls in namespace ns instead.
func WithNamespace(ctx context.Context, ns string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, namespaces.GRPCHeader, ns)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// client returns the shared connection, dialling on first use.
func (g *globals) dial() (*Client, error) {
	if g.client == nil {
		c, err := Dial(g.address, g.namespace)
		if err != nil {
			return nil, err
		}
		g.client = c
	}
	return g.client, nil
}

// context returns the command's context with the --timeout applied.
func (g *globals) context(parent context.Context) (context.Context, context.CancelFunc) {
	if g.timeout > 0 {
		return context.WithTimeout(parent, g.timeout)
	}
	return context.WithCancel(parent)
}

// connect is how a command starts talking to berthd: the shared
// connection and parent with the --timeout applied. The caller defers
// cancel; on error there is nothing to cancel.
func (g *globals) connect(parent context.Context) (*Client, context.Context, context.CancelFunc, error) {
	c, err := g.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := g.context(parent)
	return c, ctx, cancel, nil
}

// connectAPI is connect for commands that use one API only: it returns
// that API's client (newClient is a generated NewXClient function).
func connectAPI[T any](g *globals, parent context.Context, newClient func(grpc.ClientConnInterface) T) (T, context.Context, context.CancelFunc, error) {
	c, ctx, cancel, err := g.connect(parent)
	if err != nil {
		var none T
		return none, nil, nil, err
	}
	return newClient(c.Conn()), ctx, cancel, nil
}

// recvEach receives a server stream's messages until it ends, handing
// each to f; it stops at the first error of either. f's errors are the
// CLI's own (writes, templates), which containerError passes unchanged,
// so callers may map the result whole.
func recvEach[T any](stream interface{ Recv() (T, error) }, f func(T) error) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := f(m); err != nil {
			return err
		}
	}
}

// isConnectError reports whether err means berthd could not be reached.
func isConnectError(err error) bool {
	if !errors.Is(err, errdefs.ErrUnavailable) {
		if s, ok := status.FromError(err); !ok || s.Code() != codes.Unavailable {
			return false
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "connection error") || strings.Contains(msg, "dial unix") || strings.Contains(msg, "connect:")
}
