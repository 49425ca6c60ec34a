// Package containers serves containerd.services.containers.v1.Containers.
package containers

import (
	"context"
	"fmt"

	apievents "github.com/containerd/containerd/api/events"
	api "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/containers"
	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/internal/protoconv"
)

// Service answers container calls.
type Service struct {
	api.UnimplementedContainersServer
	store  containers.Store
	events events.Publisher
}

// New returns the service over store.
func New(store containers.Store, ex events.Publisher) *Service {
	return &Service{store: store, events: ex}
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterContainersServer(g, s)
	return nil
}

// ToProto converts a container record.
func ToProto(c containers.Container) *api.Container {
	pb := &api.Container{
		ID:          c.ID,
		Labels:      c.Labels,
		Image:       c.Image,
		Runtime:     &api.Container_Runtime{Name: c.Runtime.Name, Options: anyToProto(c.Runtime.Options)},
		Spec:        anyToProto(c.Spec),
		Snapshotter: c.Snapshotter,
		SnapshotKey: c.SnapshotKey,
		CreatedAt:   protoconv.Timestamp(c.CreatedAt),
		UpdatedAt:   protoconv.Timestamp(c.UpdatedAt),
		Sandbox:     c.SandboxID,
	}
	if len(c.Extensions) > 0 {
		pb.Extensions = map[string]*anypb.Any{}
		for k, v := range c.Extensions {
			pb.Extensions[k] = anyToProto(v)
		}
	}
	return pb
}

// FromProto converts an API container.
func FromProto(pb *api.Container) (containers.Container, error) {
	if pb == nil {
		return containers.Container{}, fmt.Errorf("container is required: %w", errdefs.ErrInvalidArgument)
	}
	c := containers.Container{
		ID:          pb.ID,
		Labels:      pb.Labels,
		Image:       pb.Image,
		Snapshotter: pb.Snapshotter,
		SnapshotKey: pb.SnapshotKey,
		CreatedAt:   protoconv.Time(pb.CreatedAt),
		UpdatedAt:   protoconv.Time(pb.UpdatedAt),
		SandboxID:   pb.Sandbox,
	}
	if pb.Runtime != nil {
		c.Runtime = containers.RuntimeInfo{Name: pb.Runtime.Name}
		if pb.Runtime.Options != nil {
			c.Runtime.Options = pb.Runtime.Options
		}
	}
	if pb.Spec != nil {
		c.Spec = pb.Spec
	}
	if len(pb.Extensions) > 0 {
		c.Extensions = map[string]typeurl.Any{}
		for k, v := range pb.Extensions {
			c.Extensions[k] = v
		}
	}
	return c, nil
}

func anyToProto(a typeurl.Any) *anypb.Any {
	if a == nil {
		return nil
	}
	return typeurl.MarshalProto(a)
}

// Get returns one container.
func (s *Service) Get(ctx context.Context, req *api.GetContainerRequest) (*api.GetContainerResponse, error) {
	c, err := s.store.Get(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	return &api.GetContainerResponse{Container: ToProto(c)}, nil
}

// List returns the containers matching any filter.
func (s *Service) List(ctx context.Context, req *api.ListContainersRequest) (*api.ListContainersResponse, error) {
	cs, err := s.store.List(ctx, req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListContainersResponse{}
	for _, c := range cs {
		resp.Containers = append(resp.Containers, ToProto(c))
	}
	return resp, nil
}

// ListStream streams the containers matching any filter.
func (s *Service) ListStream(req *api.ListContainersRequest, stream api.Containers_ListStreamServer) error {
	cs, err := s.store.List(stream.Context(), req.Filters...)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := stream.Send(&api.ListContainerMessage{Container: ToProto(c)}); err != nil {
			return err
		}
	}
	return nil
}

// Create records a container.
func (s *Service) Create(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	c, err := FromProto(req.Container)
	if err != nil {
		return nil, err
	}
	created, err := s.store.Create(ctx, c)
	if err != nil {
		return nil, err
	}
	s.publish(ctx, "/containers/create", &apievents.ContainerCreate{
		ID:      created.ID,
		Image:   created.Image,
		Runtime: &apievents.ContainerCreate_Runtime{Name: created.Runtime.Name, Options: anyToProto(created.Runtime.Options)},
	})
	return &api.CreateContainerResponse{Container: ToProto(created)}, nil
}

// Update changes a container record.
func (s *Service) Update(ctx context.Context, req *api.UpdateContainerRequest) (*api.UpdateContainerResponse, error) {
	c, err := FromProto(req.Container)
	if err != nil {
		return nil, err
	}
	updated, err := s.store.Update(ctx, c, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	s.publish(ctx, "/containers/update", &apievents.ContainerUpdate{
		ID: updated.ID, Image: updated.Image, Labels: updated.Labels, SnapshotKey: updated.SnapshotKey,
	})
	return &api.UpdateContainerResponse{Container: ToProto(updated)}, nil
}

// Delete removes a container record.
func (s *Service) Delete(ctx context.Context, req *api.DeleteContainerRequest) (*emptypb.Empty, error) {
	if err := s.store.Delete(ctx, req.ID); err != nil {
		return nil, err
	}
	s.publish(ctx, "/containers/delete", &apievents.ContainerDelete{ID: req.ID})
	return &emptypb.Empty{}, nil
}

func (s *Service) publish(ctx context.Context, topic string, ev any) {
	if s.events != nil {
		s.events.Publish(ctx, topic, ev)
	}
}
