// Package events forwards a shim's task events to the daemon's ttrpc events
// service (containerd.services.events.ttrpc.v1.Events/Forward).
//
// Publishing never blocks the caller: events go into a bounded in-memory
// queue that one goroutine delivers in order. While the daemon is down (or
// restarting) the queue keeps the events and the goroutine redials with a
// short backoff; once the daemon is back, the backlog is delivered in the
// order it was published.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	// DefaultQueueLimit bounds the events kept while the daemon is away.
	DefaultQueueLimit = 1024

	forwardTimeout = 5 * time.Second
	dialTimeout    = time.Second
	minBackoff     = 50 * time.Millisecond
	maxBackoff     = time.Second
)

// Publisher delivers events to one daemon.
type Publisher struct {
	address   string
	namespace string
	limit     int

	mu      sync.Mutex
	queue   []*apitypes.Envelope
	dropped int
	closing bool
	wake    chan struct{}
	abort   chan struct{}
	done    chan struct{}

	client *ttrpc.Client
	conn   eventsapi.TTRPCEventsService
}

// NewPublisher starts delivering events to the ttrpc socket at address
// ("unix:///path" or a plain path), stamped with namespace.
func NewPublisher(address, namespace string, queueLimit int) *Publisher {
	if queueLimit <= 0 {
		queueLimit = DefaultQueueLimit
	}
	p := &Publisher{
		address:   strings.TrimPrefix(address, "unix://"),
		namespace: namespace,
		limit:     queueLimit,
		wake:      make(chan struct{}, 1),
		abort:     make(chan struct{}),
		done:      make(chan struct{}),
	}
	go p.run()
	return p
}

// Publish queues event under topic. When the queue is full the oldest event
// is dropped, so the latest state (an exit, a delete) is what survives.
func (p *Publisher) Publish(topic string, event proto.Message) {
	data, err := proto.Marshal(event)
	if err != nil {
		slog.Error("encode event", "topic", topic, "error", err)
		return
	}
	env := &apitypes.Envelope{
		Timestamp: timestamppb.Now(),
		Namespace: p.namespace,
		Topic:     topic,
		Event:     &anypb.Any{TypeUrl: string(event.ProtoReflect().Descriptor().FullName()), Value: data},
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		slog.Warn("event published after close", "topic", topic)
		return
	}
	if len(p.queue) >= p.limit {
		slog.Error("event queue full, dropping oldest event", "topic", p.queue[0].Topic, "limit", p.limit)
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.dropped++
	}
	p.queue = append(p.queue, env)
	p.mu.Unlock()
	p.signal()
}

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Pending returns how many events wait for delivery.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// Close stops accepting events and waits until the queue is delivered or
// ctx is done; in the latter case the rest is dropped and an error says how
// much.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.signal()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	close(p.abort)
	<-p.done
	if n := p.Pending(); n > 0 {
		return fmt.Errorf("%d events not delivered to %s: %w", n, p.address, ctx.Err())
	}
	return nil
}

// next returns the oldest queued event, waiting for one; nil means the
// publisher is closed and drained, or aborted.
func (p *Publisher) next() *apitypes.Envelope {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			env := p.queue[0]
			p.mu.Unlock()
			return env
		}
		closing := p.closing
		p.mu.Unlock()
		if closing {
			return nil
		}
		select {
		case <-p.wake:
		case <-p.abort:
			return nil
		}
	}
}

// pop removes env from the head of the queue, unless it was dropped for
// space meanwhile.
func (p *Publisher) pop(env *apitypes.Envelope) {
	p.mu.Lock()
	if len(p.queue) > 0 && p.queue[0] == env {
		p.queue[0] = nil
		p.queue = p.queue[1:]
	}
	if len(p.queue) == 0 {
		p.queue = nil // let a large backlog's array go
	}
	p.mu.Unlock()
}

// maxRefusals is how often an event the daemon answered with an error is
// retried before it is dropped, so one bad event cannot block the queue.
const maxRefusals = 3

func (p *Publisher) run() {
	defer close(p.done)
	defer p.disconnect()
	backoff := minBackoff
	refusals := 0
	for {
		env := p.next()
		if env == nil {
			return
		}
		err := p.forward(env)
		if err != nil && refused(err) {
			refusals++
			if refusals >= maxRefusals {
				slog.Error("daemon refused event, dropping it", "topic", env.Topic, "error", err)
				err = nil
			}
		}
		if err == nil {
			p.pop(env)
			backoff, refusals = minBackoff, 0
			continue
		}
		slog.Debug("forward event", "topic", env.Topic, "error", err, "retry in", backoff)
		p.disconnect()
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-p.abort:
			t.Stop()
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (p *Publisher) forward(env *apitypes.Envelope) error {
	if p.conn == nil {
		conn, err := net.DialTimeout("unix", p.address, dialTimeout)
		if err != nil {
			return err
		}
		p.client = ttrpc.NewClient(conn)
		p.conn = eventsapi.NewTTRPCEventsClient(p.client)
	}
	ctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
	defer cancel()
	_, err := p.conn.Forward(ctx, &eventsapi.ForwardRequest{Envelope: env})
	return err
}

func (p *Publisher) disconnect() {
	if p.client != nil {
		p.client.Close()
	}
	p.client, p.conn = nil, nil
}

// refused reports whether the daemon answered the call with an error, as
// opposed to not being reachable, timing out or going away mid-call.
func refused(err error) bool {
	if errors.Is(err, ttrpc.ErrClosed) {
		return false
	}
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return false
	}
	return true
}
