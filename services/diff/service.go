// Package diff serves containerd.services.diff.v1.Diff over berth's
// differs: Apply extracts a layer blob onto mounts, Diff writes the layer
// between two sets of mounts into the content store. Like containerd, the
// differs are tried in order until one does not answer
// errdefs.ErrNotImplemented.
package diff

import (
	"context"
	"errors"
	"fmt"

	api "github.com/containerd/containerd/api/services/diff/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"

	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/labels"
	"github.com/berthd/berth/internal/protoconv"
)

// Differ is what the service needs of a differ plugin.
type Differ interface {
	diff.Applier
	diff.Comparer
}

// Service answers diff calls.
type Service struct {
	api.UnimplementedDiffServer
	differs []Differ
}

// New returns the service over differs, in order of preference.
func New(differs ...Differ) *Service {
	return &Service{differs: differs}
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterDiffServer(g, s)
	return nil
}

// Apply extracts the diff blob onto the mounts and returns the descriptor
// of the uncompressed layer (its digest is the diff ID, which the client
// compares with the image config).
func (s *Service) Apply(ctx context.Context, req *api.ApplyRequest) (*api.ApplyResponse, error) {
	desc, err := protoconv.DescriptorFromProto("diff", req.Diff)
	if err != nil {
		return nil, err
	}
	mounts := protoconv.MountsFromProto(req.Mounts)
	opts := []diff.ApplyOpt{diff.WithSyncFs(req.SyncFs)}
	if len(req.Payloads) > 0 {
		payloads := make(map[string]typeurl.Any, len(req.Payloads))
		for k, v := range req.Payloads {
			payloads[k] = v
		}
		opts = append(opts, diff.WithPayloads(payloads))
	}
	var applied ocispec.Descriptor
	err = s.each(func(d Differ) error {
		var err error
		applied, err = d.Apply(ctx, desc, mounts, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &api.ApplyResponse{Applied: protoconv.DescriptorToProto(applied)}, nil
}

// Diff writes the layer that turns the left mounts into the right ones.
func (s *Service) Diff(ctx context.Context, req *api.DiffRequest) (*api.DiffResponse, error) {
	if err := labels.ValidateAll(req.Labels); err != nil {
		return nil, fmt.Errorf("diff labels: %w", err)
	}
	var opts []diff.Opt
	if req.MediaType != "" {
		opts = append(opts, diff.WithMediaType(req.MediaType))
	}
	if req.Ref != "" {
		opts = append(opts, diff.WithReference(req.Ref))
	}
	if len(req.Labels) > 0 {
		opts = append(opts, diff.WithLabels(req.Labels))
	}
	if req.SourceDateEpoch != nil {
		if err := req.SourceDateEpoch.CheckValid(); err != nil {
			return nil, fmt.Errorf("source_date_epoch: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		t := req.SourceDateEpoch.AsTime()
		opts = append(opts, diff.WithSourceDateEpoch(&t))
	}
	left, right := protoconv.MountsFromProto(req.Left), protoconv.MountsFromProto(req.Right)
	var written ocispec.Descriptor
	err := s.each(func(d Differ) error {
		var err error
		written, err = d.Compare(ctx, left, right, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &api.DiffResponse{Diff: protoconv.DescriptorToProto(written)}, nil
}

// each calls f with each differ until one answers something other than
// errdefs.ErrNotImplemented.
func (s *Service) each(f func(Differ) error) error {
	if len(s.differs) == 0 {
		return fmt.Errorf("no differ is loaded: %w", errdefs.ErrNotImplemented)
	}
	var err error
	for _, d := range s.differs {
		if err = f(d); !errors.Is(err, errdefs.ErrNotImplemented) {
			return err
		}
	}
	return err
}
