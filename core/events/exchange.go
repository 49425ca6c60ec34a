// Package events is berth's event exchange: services and shims publish
// events on topics ("/tasks/exit", "/images/create"), and subscribers receive
// those matching their filters. Delivery to a subscriber is in publish order;
// a subscriber that cannot keep up is dropped rather than slowing publishers.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/namespaces"
)

// Envelope is one published event.
type Envelope struct {
	Timestamp time.Time
	Namespace string
	Topic     string
	Event     typeurl.Any
}

// Publisher publishes events in the namespace of ctx.
type Publisher interface {
	Publish(ctx context.Context, topic string, event any) error
}

// subscriberBuffer is how many events may wait for a slow subscriber before
// it is dropped with an error.
const subscriberBuffer = 1024

// ErrSlowSubscriber ends a subscription that fell too far behind.
var ErrSlowSubscriber = errors.New("event subscriber fell behind and was dropped")

// Exchange fans events out to subscribers.
type Exchange struct {
	mu   sync.RWMutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	filter filters.Filter
	ch     chan *Envelope
	errCh  chan error
	once   sync.Once
}

func (s *subscriber) fail(err error) {
	s.once.Do(func() {
		s.errCh <- err
		close(s.errCh)
	})
}

// NewExchange returns an empty exchange.
func NewExchange() *Exchange {
	return &Exchange{subs: map[*subscriber]struct{}{}}
}

// Publish marshals event and forwards it under ctx's namespace.
func (e *Exchange) Publish(ctx context.Context, topic string, event any) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	a, err := typeurl.MarshalAny(event)
	if err != nil {
		return fmt.Errorf("publish %s: marshal event: %w", topic, err)
	}
	return e.Forward(ctx, &Envelope{Timestamp: time.Now().UTC(), Namespace: ns, Topic: topic, Event: a})
}

// Forward delivers an already built envelope (from a shim or a client).
func (e *Exchange) Forward(ctx context.Context, env *Envelope) error {
	if err := ValidateTopic(env.Topic); err != nil {
		return err
	}
	if env.Namespace == "" {
		return fmt.Errorf("event %s has no namespace: %w", env.Topic, errdefs.ErrInvalidArgument)
	}
	if env.Event == nil {
		return fmt.Errorf("event %s has no payload: %w", env.Topic, errdefs.ErrInvalidArgument)
	}
	slog.Debug("event", "namespace", env.Namespace, "topic", env.Topic)
	ad := adaptor(env)
	e.mu.RLock()
	defer e.mu.RUnlock()
	for s := range e.subs {
		if !s.filter.Match(ad) {
			continue
		}
		select {
		case s.ch <- env:
		default:
			s.fail(ErrSlowSubscriber)
		}
	}
	return nil
}

// Subscribe returns the events matching any of fs until ctx ends. The error
// channel yields one error (ctx's, or ErrSlowSubscriber) and closes.
func (e *Exchange) Subscribe(ctx context.Context, fs ...string) (<-chan *Envelope, <-chan error) {
	errCh := make(chan error, 1)
	f, err := filters.ParseAll(fs...)
	if err != nil {
		errCh <- fmt.Errorf("event filter: %w", err)
		close(errCh)
		return nil, errCh
	}
	s := &subscriber{filter: f, ch: make(chan *Envelope, subscriberBuffer), errCh: errCh}
	e.mu.Lock()
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	go func() {
		<-ctx.Done()
		e.mu.Lock()
		delete(e.subs, s)
		e.mu.Unlock()
		s.fail(ctx.Err())
	}()
	return s.ch, errCh
}

// ValidateTopic checks a topic: a path of identifiers like "/tasks/exit".
func ValidateTopic(topic string) error {
	if !strings.HasPrefix(topic, "/") || len(topic) < 2 {
		return fmt.Errorf("event topic %q must start with '/' and name something: %w", topic, errdefs.ErrInvalidArgument)
	}
	for _, part := range strings.Split(topic[1:], "/") {
		if part == "" {
			return fmt.Errorf("event topic %q has an empty component: %w", topic, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// adaptor exposes topic, namespace and the event's own fields
// ("event.container_id") to filters.
func adaptor(env *Envelope) filters.Adaptor {
	var msg protoreflect.Message
	decoded := false
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "topic":
			return env.Topic, true
		case "namespace":
			return env.Namespace, true
		case "event":
			if !decoded {
				decoded = true
				if v, err := typeurl.UnmarshalAny(env.Event); err == nil {
					if m, ok := v.(proto.Message); ok {
						msg = m.ProtoReflect()
					}
				}
			}
			return messageField(msg, fp[1:])
		}
		return "", false
	})
}

func messageField(m protoreflect.Message, fp []string) (string, bool) {
	if m == nil || len(fp) == 0 {
		return "", false
	}
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(fp[0]))
	if fd == nil {
		fd = m.Descriptor().Fields().ByJSONName(fp[0])
	}
	if fd == nil {
		return "", false
	}
	v := m.Get(fd)
	switch {
	case fd.IsMap():
		if len(fp) < 2 || fd.MapValue().Kind() != protoreflect.StringKind {
			return "", false
		}
		mv := v.Map().Get(protoreflect.ValueOfString(strings.Join(fp[1:], ".")).MapKey())
		if !mv.IsValid() {
			return "", false
		}
		return mv.String(), true
	case fd.Kind() == protoreflect.MessageKind:
		return messageField(v.Message(), fp[1:])
	case len(fp) == 1 && !fd.IsList():
		return fmt.Sprint(v.Interface()), true
	}
	return "", false
}
