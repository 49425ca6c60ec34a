package streaming

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	api "github.com/containerd/containerd/api/services/streaming/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthd/berth/core/namespaces"
)

type nsStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s nsStream) Context() context.Context { return s.ctx }

// serve runs the service on a unix socket with berthd's namespace handling
// and returns a client connection.
func serve(t *testing.T, m *Manager) *grpc.ClientConn {
	t.Helper()
	dir, err := os.MkdirTemp("", "b-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx := ss.Context()
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(namespaces.GRPCHeader)) > 0 {
			ctx = namespaces.WithNamespace(ctx, md.Get(namespaces.GRPCHeader)[0])
		}
		return h(srv, nsStream{ss, ctx})
	}))
	if err := New(m).Register(srv); err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// open registers a client stream named id in namespace ns.
func open(t *testing.T, conn *grpc.ClientConn, ns, id string) (api.Streaming_StreamClient, context.CancelFunc, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), namespaces.GRPCHeader, ns), 30*time.Second)
	st, err := api.NewStreamingClient(conn).Stream(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	init, _ := anypb.New(&api.StreamInit{ID: id})
	if err := st.Send(init); err != nil {
		cancel()
		return nil, nil, err
	}
	if _, err := st.Recv(); err != nil {
		cancel()
		return nil, nil, err
	}
	return st, cancel, nil
}

func TestStreamRegisteredUsedAndClosed(t *testing.T) {
	m := NewManager()
	conn := serve(t, m)
	client, cancel, err := open(t, conn, "a", "progress-1")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	ctxA := namespaces.WithNamespace(context.Background(), "a")
	if _, err := m.Get(namespaces.WithNamespace(context.Background(), "b"), "progress-1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("stream found from another namespace: %v", err)
	}
	server, err := m.Get(ctxA, "progress-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := open(t, conn, "a", "progress-1"); err == nil {
		t.Error("a second stream registered under a taken name")
	}

	// Both ways.
	msg, _ := anypb.New(wrapperspb.String("to client"))
	if err := server.Send(msg); err != nil {
		t.Fatal(err)
	}
	got, err := client.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var s wrapperspb.StringValue
	if err := got.UnmarshalTo(&s); err != nil || s.Value != "to client" {
		t.Errorf("client got %v (%v)", got, err)
	}
	msg, _ = anypb.New(wrapperspb.String("to server"))
	if err := client.Send(msg); err != nil {
		t.Fatal(err)
	}
	if got, err = server.Recv(); err != nil || got.UnmarshalTo(&s) != nil || s.Value != "to server" {
		t.Errorf("server got %v (%v)", got, err)
	}

	// Closed on the server side: the client reads the end, the name is free.
	server.Close()
	if _, err := client.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("client after close: %v, want EOF", err)
	}
	if err := server.Send(msg); err == nil {
		t.Error("send on a closed stream succeeded")
	}
	waitFor(t, func() bool { return m.Len() == 0 })
}

func TestStreamForgottenWhenClientLeaves(t *testing.T) {
	m := NewManager()
	conn := serve(t, m)
	_, cancel, err := open(t, conn, "a", "creds-1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Len() != 1 {
		t.Fatalf("%d streams registered, want 1", m.Len())
	}
	cancel()
	waitFor(t, func() bool { return m.Len() == 0 })

	st, err := api.NewStreamingClient(conn).Stream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	notInit, _ := anypb.New(wrapperspb.String("hello"))
	st.Send(notInit)
	if _, err := st.Recv(); err == nil {
		t.Error("a stream opened without StreamInit was acknowledged")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
