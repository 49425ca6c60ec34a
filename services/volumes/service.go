// Package volumes serves berth.volumes.v1.Volumes over the volume store.
package volumes

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/volumes"
	"github.com/berthd/berth/internal/protoconv"
	api "github.com/berthd/berth/proto/berth/volumes/v1"
)

// Service answers volume calls.
type Service struct {
	api.UnimplementedVolumesServer
	store *volumes.Store
}

// New returns the service over store.
func New(store *volumes.Store) *Service { return &Service{store: store} }

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterVolumesServer(g, s)
	return nil
}

// ToProto converts a volume.
func ToProto(v volumes.Volume) *api.Volume {
	return &api.Volume{
		Name:       v.Name,
		Driver:     v.Driver,
		Labels:     v.Labels,
		Options:    v.Options,
		CreatedAt:  protoconv.Timestamp(v.CreatedAt),
		Mountpoint: v.Mountpoint,
		Anonymous:  v.Anonymous,
		Containers: v.Users,
	}
}

// Create makes a volume.
func (s *Service) Create(ctx context.Context, req *api.CreateVolumeRequest) (*api.CreateVolumeResponse, error) {
	v, err := s.store.Create(ctx, volumes.Spec{Name: req.Name, Driver: req.Driver, Labels: req.Labels, Options: req.Options})
	if err != nil {
		return nil, err
	}
	return &api.CreateVolumeResponse{Volume: ToProto(v)}, nil
}

// Get returns one volume.
func (s *Service) Get(ctx context.Context, req *api.GetVolumeRequest) (*api.GetVolumeResponse, error) {
	v, err := s.store.Get(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return &api.GetVolumeResponse{Volume: ToProto(v)}, nil
}

// List returns the volumes the filters match.
func (s *Service) List(ctx context.Context, req *api.ListVolumesRequest) (*api.ListVolumesResponse, error) {
	f, err := volumes.ParseFilters(req.Filters)
	if err != nil {
		return nil, err
	}
	vols, err := s.store.List(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &api.ListVolumesResponse{Volumes: make([]*api.Volume, 0, len(vols))}
	for _, v := range vols {
		resp.Volumes = append(resp.Volumes, ToProto(v))
	}
	return resp, nil
}

// Remove deletes a volume.
func (s *Service) Remove(ctx context.Context, req *api.RemoveVolumeRequest) (*emptypb.Empty, error) {
	if err := s.store.Remove(ctx, req.Name, req.Force); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Prune removes unused volumes.
func (s *Service) Prune(ctx context.Context, req *api.PruneVolumesRequest) (*api.PruneVolumesResponse, error) {
	f, err := volumes.ParseFilters(req.Filters)
	if err != nil {
		return nil, err
	}
	removed, reclaimed, err := s.store.Prune(ctx, req.All, f)
	if err != nil {
		return nil, err
	}
	return &api.PruneVolumesResponse{Deleted: removed, SpaceReclaimed: reclaimed}, nil
}
