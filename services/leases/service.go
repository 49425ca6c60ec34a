// Package leases serves containerd.services.leases.v1.Leases.
package leases

import (
	"context"
	"fmt"

	api "github.com/containerd/containerd/api/services/leases/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/internal/protoconv"
)

// Service answers lease calls.
type Service struct {
	api.UnimplementedLeasesServer
	manager leases.Manager
}

// New returns the service over manager.
func New(m leases.Manager) *Service { return &Service{manager: m} }

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterLeasesServer(g, s)
	return nil
}

func toProto(l leases.Lease) *api.Lease {
	return &api.Lease{ID: l.ID, CreatedAt: protoconv.Timestamp(l.CreatedAt), Labels: l.Labels}
}

// Create makes a lease.
func (s *Service) Create(ctx context.Context, req *api.CreateRequest) (*api.CreateResponse, error) {
	var opts []leases.Opt
	if req.ID != "" {
		opts = append(opts, leases.WithID(req.ID))
	}
	if len(req.Labels) > 0 {
		opts = append(opts, leases.WithLabels(req.Labels))
	}
	l, err := s.manager.Create(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &api.CreateResponse{Lease: toProto(l)}, nil
}

// Delete removes a lease; with sync, garbage collection runs first.
func (s *Service) Delete(ctx context.Context, req *api.DeleteRequest) (*emptypb.Empty, error) {
	var opts []leases.DeleteOpt
	if req.Sync {
		opts = append(opts, leases.SynchronousDelete)
	}
	if err := s.manager.Delete(ctx, leases.Lease{ID: req.ID}, opts...); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// List returns the leases matching any filter.
func (s *Service) List(ctx context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	ls, err := s.manager.List(ctx, req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListResponse{}
	for _, l := range ls {
		resp.Leases = append(resp.Leases, toProto(l))
	}
	return resp, nil
}

func resource(r *api.Resource) (leases.Resource, error) {
	if r == nil || r.ID == "" || r.Type == "" {
		return leases.Resource{}, fmt.Errorf("resource id and type are required: %w", errdefs.ErrInvalidArgument)
	}
	return leases.Resource{ID: r.ID, Type: r.Type}, nil
}

// AddResource attaches a resource to a lease.
func (s *Service) AddResource(ctx context.Context, req *api.AddResourceRequest) (*emptypb.Empty, error) {
	r, err := resource(req.Resource)
	if err != nil {
		return nil, err
	}
	if err := s.manager.AddResource(ctx, leases.Lease{ID: req.ID}, r); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// DeleteResource detaches a resource from a lease.
func (s *Service) DeleteResource(ctx context.Context, req *api.DeleteResourceRequest) (*emptypb.Empty, error) {
	r, err := resource(req.Resource)
	if err != nil {
		return nil, err
	}
	if err := s.manager.DeleteResource(ctx, leases.Lease{ID: req.ID}, r); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// ListResources lists what a lease holds.
func (s *Service) ListResources(ctx context.Context, req *api.ListResourcesRequest) (*api.ListResourcesResponse, error) {
	rs, err := s.manager.ListResources(ctx, leases.Lease{ID: req.ID})
	if err != nil {
		return nil, err
	}
	resp := &api.ListResourcesResponse{}
	for _, r := range rs {
		resp.Resources = append(resp.Resources, &api.Resource{ID: r.ID, Type: r.Type})
	}
	return resp, nil
}
