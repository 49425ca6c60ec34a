// Package events serves containerd.services.events.v1.Events on gRPC and
// containerd.services.events.ttrpc.v1.Events on ttrpc (where shims forward
// their task events).
package events

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/api/services/events/v1"
	ttrpcevents "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	coreevents "github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/internal/protoconv"
)

// Service answers event calls over the exchange.
type Service struct {
	events.UnimplementedEventsServer
	exchange *coreevents.Exchange
}

// New returns the service over ex.
func New(ex *coreevents.Exchange) *Service { return &Service{exchange: ex} }

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	events.RegisterEventsServer(g, s)
	return nil
}

// RegisterTTRPC implements plugins.TTRPCService.
func (s *Service) RegisterTTRPC(t *ttrpc.Server) error {
	ttrpcevents.RegisterTTRPCEventsService(t, ttrpcService{s})
	return nil
}

// Publish publishes one event in the caller's namespace.
func (s *Service) Publish(ctx context.Context, req *events.PublishRequest) (*emptypb.Empty, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if req.Event == nil {
		return nil, fmt.Errorf("event payload is required: %w", errdefs.ErrInvalidArgument)
	}
	env := &coreevents.Envelope{Timestamp: timeNow(), Namespace: ns, Topic: req.Topic, Event: req.Event}
	if err := s.exchange.Forward(ctx, env); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Forward delivers an envelope built elsewhere, keeping its namespace and
// timestamp.
func (s *Service) Forward(ctx context.Context, req *events.ForwardRequest) (*emptypb.Empty, error) {
	if err := s.forward(ctx, req.Envelope); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) forward(ctx context.Context, env *types.Envelope) error {
	if env == nil {
		return fmt.Errorf("envelope is required: %w", errdefs.ErrInvalidArgument)
	}
	return s.exchange.Forward(ctx, &coreevents.Envelope{
		Timestamp: protoconv.Time(env.Timestamp),
		Namespace: env.Namespace,
		Topic:     env.Topic,
		Event:     env.Event,
	})
}

// Subscribe streams events matching any filter until the client goes away.
func (s *Service) Subscribe(req *events.SubscribeRequest, stream events.Events_SubscribeServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ch, errs := s.exchange.Subscribe(ctx, req.Filters...)
	for {
		select {
		case env := <-ch:
			if err := stream.Send(&types.Envelope{
				Timestamp: protoconv.Timestamp(env.Timestamp),
				Namespace: env.Namespace,
				Topic:     env.Topic,
				Event:     typeurl.MarshalProto(env.Event),
			}); err != nil {
				return err
			}
		case err := <-errs:
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

type ttrpcService struct{ s *Service }

func (t ttrpcService) Forward(ctx context.Context, req *ttrpcevents.ForwardRequest) (*emptypb.Empty, error) {
	if err := t.s.forward(ctx, req.Envelope); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
