// Package images serves containerd.services.images.v1.Images over a
// namespaced image store, publishing image events.
package images

import (
	"context"
	"fmt"

	apievents "github.com/containerd/containerd/api/events"
	api "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/internal/protoconv"
)

// Service answers image calls.
type Service struct {
	api.UnimplementedImagesServer
	store  images.Store
	events events.Publisher
}

// New returns the service over store.
func New(store images.Store, ex events.Publisher) *Service {
	return &Service{store: store, events: ex}
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterImagesServer(g, s)
	return nil
}

// ToProto converts an image record.
func ToProto(i images.Image) *api.Image {
	return &api.Image{
		Name:      i.Name,
		Labels:    i.Labels,
		Target:    protoconv.DescriptorToProto(i.Target),
		CreatedAt: protoconv.Timestamp(i.CreatedAt),
		UpdatedAt: protoconv.Timestamp(i.UpdatedAt),
	}
}

func fromProto(i *api.Image, needTarget bool) (images.Image, error) {
	if i == nil {
		return images.Image{}, fmt.Errorf("image is required: %w", errdefs.ErrInvalidArgument)
	}
	out := images.Image{Name: i.Name, Labels: i.Labels, CreatedAt: protoconv.Time(i.CreatedAt), UpdatedAt: protoconv.Time(i.UpdatedAt)}
	if i.Target != nil || needTarget {
		t, err := protoconv.DescriptorFromProto("image.target", i.Target)
		if err != nil {
			return images.Image{}, err
		}
		out.Target = t
	}
	return out, nil
}

// Get returns one image.
func (s *Service) Get(ctx context.Context, req *api.GetImageRequest) (*api.GetImageResponse, error) {
	img, err := s.store.Get(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return &api.GetImageResponse{Image: ToProto(img)}, nil
}

// List returns the images matching any filter.
func (s *Service) List(ctx context.Context, req *api.ListImagesRequest) (*api.ListImagesResponse, error) {
	imgs, err := s.store.List(ctx, req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListImagesResponse{}
	for _, i := range imgs {
		resp.Images = append(resp.Images, ToProto(i))
	}
	return resp, nil
}

// Create records a new image.
func (s *Service) Create(ctx context.Context, req *api.CreateImageRequest) (*api.CreateImageResponse, error) {
	img, err := fromProto(req.Image, true)
	if err != nil {
		return nil, err
	}
	created, err := s.store.Create(ctx, img)
	if err != nil {
		return nil, err
	}
	s.publish(ctx, "/images/create", &apievents.ImageCreate{Name: created.Name, Labels: created.Labels})
	return &api.CreateImageResponse{Image: ToProto(created)}, nil
}

// Update changes an image's labels or target.
func (s *Service) Update(ctx context.Context, req *api.UpdateImageRequest) (*api.UpdateImageResponse, error) {
	img, err := fromProto(req.Image, false)
	if err != nil {
		return nil, err
	}
	updated, err := s.store.Update(ctx, img, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	s.publish(ctx, "/images/update", &apievents.ImageUpdate{Name: updated.Name, Labels: updated.Labels})
	return &api.UpdateImageResponse{Image: ToProto(updated)}, nil
}

// Delete removes an image; with sync, garbage collection runs before the
// call returns.
func (s *Service) Delete(ctx context.Context, req *api.DeleteImageRequest) (*emptypb.Empty, error) {
	var opts []images.DeleteOpt
	if req.Sync {
		opts = append(opts, images.SynchronousDelete())
	}
	if req.Target != nil {
		t, err := protoconv.DescriptorFromProto("target", req.Target)
		if err != nil {
			return nil, err
		}
		opts = append(opts, images.DeleteTarget(&t))
	}
	if err := s.store.Delete(ctx, req.Name, opts...); err != nil {
		return nil, err
	}
	s.publish(ctx, "/images/delete", &apievents.ImageDelete{Name: req.Name})
	return &emptypb.Empty{}, nil
}

func (s *Service) publish(ctx context.Context, topic string, ev any) {
	if s.events != nil {
		s.events.Publish(ctx, topic, ev)
	}
}
