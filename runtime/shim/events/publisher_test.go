package events

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// receiver is a daemon's events service.
type receiver struct {
	path   string
	mu     sync.Mutex
	got    []*apitypes.Envelope
	reject string // topic answered with an error
	server *ttrpc.Server
}

func (r *receiver) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Envelope.Topic == r.reject {
		return nil, status.Error(codes.InvalidArgument, "bad event")
	}
	r.got = append(r.got, req.Envelope)
	return &emptypb.Empty{}, nil
}

func (r *receiver) start(t *testing.T) {
	t.Helper()
	os.Remove(r.path)
	l, err := net.Listen("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterTTRPCEventsService(s, r)
	r.server = s
	go s.Serve(context.Background(), l)
	t.Cleanup(func() { s.Close() })
}

func (r *receiver) topics() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.got {
		out = append(out, e.Topic)
	}
	return out
}

func (r *receiver) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.topics()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %v, want %d events", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newReceiver(t *testing.T) *receiver {
	dir, err := os.MkdirTemp("", "b-ev")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &receiver{path: filepath.Join(dir, "d.sock.ttrpc")}
}

func TestDeliversInOrderWithEnvelope(t *testing.T) {
	r := newReceiver(t)
	r.start(t)
	p := NewPublisher("unix://"+r.path, "ns1", 0)
	p.Publish("/tasks/start", &eventstypes.TaskStart{ContainerID: "c", Pid: 7})
	p.Publish("/tasks/exit", &eventstypes.TaskExit{ContainerID: "c", ExitStatus: 3})
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.topics(); len(got) != 2 || got[0] != "/tasks/start" || got[1] != "/tasks/exit" {
		t.Fatalf("topics %v", got)
	}
	env := r.got[1]
	if env.Namespace != "ns1" || env.Timestamp == nil || env.Event.TypeUrl != "containerd.events.TaskExit" {
		t.Fatalf("envelope %v", env)
	}
	var exit eventstypes.TaskExit
	if err := proto.Unmarshal(env.Event.Value, &exit); err != nil || exit.ExitStatus != 3 {
		t.Fatalf("event %v %v", &exit, err)
	}
}

func TestQueuesWhileDaemonIsDown(t *testing.T) {
	r := newReceiver(t)
	p := NewPublisher(r.path, "ns", 0)
	start := time.Now()
	for _, topic := range []string{"/a", "/b", "/c"} {
		p.Publish(topic, &eventstypes.TaskOOM{ContainerID: topic})
	}
	if time.Since(start) > time.Second {
		t.Fatal("Publish blocked while the daemon was down")
	}
	time.Sleep(300 * time.Millisecond) // a few failed attempts
	if n := p.Pending(); n != 3 {
		t.Fatalf("pending %d, want 3", n)
	}
	r.start(t)
	if got := r.waitFor(t, 3); got[0] != "/a" || got[1] != "/b" || got[2] != "/c" {
		t.Fatalf("topics %v", got)
	}
	// The daemon restarts: the publisher reconnects.
	r.server.Close()
	p.Publish("/d", &eventstypes.TaskOOM{ContainerID: "d"})
	r.start(t)
	if got := r.waitFor(t, 4); got[3] != "/d" {
		t.Fatalf("topics %v", got)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBoundedQueueDropsOldest(t *testing.T) {
	r := newReceiver(t)
	p := NewPublisher(r.path, "ns", 2)
	for _, topic := range []string{"/1", "/2", "/3", "/4"} {
		p.Publish(topic, &eventstypes.TaskOOM{ContainerID: topic})
	}
	r.start(t)
	got := r.waitFor(t, 2)
	p.Close(context.Background())
	if len(got) != 2 || got[0] != "/3" || got[1] != "/4" {
		t.Fatalf("topics %v, want the two newest", got)
	}
}

func TestRefusedEventDoesNotBlockQueue(t *testing.T) {
	r := newReceiver(t)
	r.reject = "/bad"
	r.start(t)
	p := NewPublisher(r.path, "ns", 0)
	p.Publish("/bad", &eventstypes.TaskOOM{})
	p.Publish("/good", &eventstypes.TaskOOM{})
	if got := r.waitFor(t, 1); got[0] != "/good" {
		t.Fatalf("topics %v", got)
	}
	p.Close(context.Background())
}

func TestCloseGivesUpAtDeadline(t *testing.T) {
	r := newReceiver(t)
	p := NewPublisher(r.path, "ns", 0)
	p.Publish("/lost", &eventstypes.TaskOOM{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close: %v, want deadline exceeded", err)
	}
}
