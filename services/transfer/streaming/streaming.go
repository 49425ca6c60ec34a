// Package streaming serves containerd.services.streaming.v1.Streaming: a
// client opens a bidirectional stream of google.protobuf.Any messages,
// names it in a first StreamInit message, and is acknowledged once the
// stream is registered; another call of the same client (a transfer) then
// finds it by that name in the same namespace and uses it, for progress
// sent to the client or credentials asked of it.
//
// A stream lives until the server side closes it (the acknowledged RPC then
// ends with OK, which the client reads as EOF) or the client goes away.
package streaming

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	api "github.com/containerd/containerd/api/services/streaming/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/namespaces"
)

// Stream is a registered client stream. Send and Recv may each be called
// from one goroutine at a time (Send is serialised here anyway).
type Stream interface {
	Send(*anypb.Any) error
	Recv() (*anypb.Any, error)
	// Close ends the stream for the client.
	Close() error
}

// Manager keeps registered streams by namespace and name.
type Manager struct {
	mu      sync.Mutex
	streams map[string]map[string]*stream
}

// NewManager returns an empty manager.
func NewManager() *Manager {
	return &Manager{streams: map[string]map[string]*stream{}}
}

// Get returns the stream name registered in the namespace of ctx.
func (m *Manager) Get(ctx context.Context, name string) (Stream, error) {
	ns, _ := namespaces.Namespace(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.streams[ns][name]
	if !ok {
		return nil, fmt.Errorf("stream %q in namespace %q: %w", name, ns, errdefs.ErrNotFound)
	}
	return s, nil
}

// Len is the number of registered streams, for tests and metrics.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, byName := range m.streams {
		n += len(byName)
	}
	return n
}

func (m *Manager) register(ns, name string, s *stream) error {
	if name == "" {
		return fmt.Errorf("stream init: empty stream id: %w", errdefs.ErrInvalidArgument)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	byName, ok := m.streams[ns]
	if !ok {
		byName = map[string]*stream{}
		m.streams[ns] = byName
	}
	if _, taken := byName[name]; taken {
		return fmt.Errorf("stream %q in namespace %q: %w", name, ns, errdefs.ErrAlreadyExists)
	}
	byName[name] = s
	return nil
}

func (m *Manager) unregister(ns, name string, s *stream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.streams[ns][name] == s {
		delete(m.streams[ns], name)
		if len(m.streams[ns]) == 0 {
			delete(m.streams, ns)
		}
	}
}

// Service answers Streaming calls, registering streams with its manager.
type Service struct {
	api.UnimplementedStreamingServer
	m *Manager
}

// New returns the service over m.
func New(m *Manager) *Service { return &Service{m: m} }

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterStreamingServer(g, s)
	return nil
}

// Stream registers the client's stream under the id of its first message,
// acknowledges it, and holds it open until it is closed on this side or
// the client leaves.
func (s *Service) Stream(srv api.Streaming_StreamServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	var init api.StreamInit
	if err := first.UnmarshalTo(&init); err != nil {
		return fmt.Errorf("stream init: first message is %s, not a StreamInit: %w", first.GetTypeUrl(), errdefs.ErrInvalidArgument)
	}
	ctx := srv.Context()
	ns, _ := namespaces.Namespace(ctx)
	st := &stream{srv: srv, closed: make(chan struct{})}
	if err := s.m.register(ns, init.ID, st); err != nil {
		return err
	}
	defer s.m.unregister(ns, init.ID, st)
	ack, err := anypb.New(&emptypb.Empty{})
	if err != nil {
		return err
	}
	if err := st.Send(ack); err != nil {
		return err
	}
	slog.DebugContext(ctx, "stream registered", "stream", init.ID, "namespace", ns)
	select {
	case <-ctx.Done():
	case <-st.closed:
	}
	// No Send may run once the handler returns: take the send lock.
	st.sendMu.Lock()
	st.Close()
	st.sendMu.Unlock()
	return nil
}

type stream struct {
	srv    api.Streaming_StreamServer
	sendMu sync.Mutex
	once   sync.Once
	closed chan struct{}
}

func (s *stream) Send(a *anypb.Any) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	select {
	case <-s.closed:
		return fmt.Errorf("send on a closed stream: %w", errdefs.ErrFailedPrecondition)
	default:
	}
	return s.srv.Send(a)
}

func (s *stream) Recv() (*anypb.Any, error) {
	select {
	case <-s.closed:
		return nil, fmt.Errorf("receive on a closed stream: %w", errdefs.ErrFailedPrecondition)
	default:
	}
	return s.srv.Recv()
}

func (s *stream) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}
