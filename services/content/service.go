// Package content serves containerd.services.content.v1.Content over a
// namespaced content store.
package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	api "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/internal/protoconv"
)

// readChunk is the most data one Read response carries; listChunk the most
// infos one List response carries. Both keep messages well under the gRPC
// size limit.
const (
	readChunk = 1 << 20
	listChunk = 100
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}

// Service answers content calls.
type Service struct {
	api.UnimplementedContentServer
	store content.Store
}

// New returns the service over store.
func New(store content.Store) *Service { return &Service{store: store} }

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterContentServer(g, s)
	return nil
}

func infoToProto(i content.Info) *api.Info {
	return &api.Info{
		Digest:    i.Digest.String(),
		Size:      i.Size,
		CreatedAt: protoconv.Timestamp(i.CreatedAt),
		UpdatedAt: protoconv.Timestamp(i.UpdatedAt),
		Labels:    i.Labels,
	}
}

func statusToProto(st content.Status) *api.Status {
	return &api.Status{
		Ref:       st.Ref,
		Offset:    st.Offset,
		Total:     st.Total,
		Expected:  st.Expected.String(),
		StartedAt: protoconv.Timestamp(st.StartedAt),
		UpdatedAt: protoconv.Timestamp(st.UpdatedAt),
	}
}

// Info returns one blob's metadata.
func (s *Service) Info(ctx context.Context, req *api.InfoRequest) (*api.InfoResponse, error) {
	dg, err := protoconv.Digest("digest", req.Digest)
	if err != nil {
		return nil, err
	}
	info, err := s.store.Info(ctx, dg)
	if err != nil {
		return nil, err
	}
	return &api.InfoResponse{Info: infoToProto(info)}, nil
}

// Update changes a blob's labels.
func (s *Service) Update(ctx context.Context, req *api.UpdateRequest) (*api.UpdateResponse, error) {
	if req.Info == nil {
		return nil, fmt.Errorf("info is required: %w", errdefs.ErrInvalidArgument)
	}
	dg, err := protoconv.Digest("info.digest", req.Info.Digest)
	if err != nil {
		return nil, err
	}
	info, err := s.store.Update(ctx, content.Info{Digest: dg, Labels: req.Info.Labels}, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	return &api.UpdateResponse{Info: infoToProto(info)}, nil
}

// List streams the blobs matching the filters.
func (s *Service) List(req *api.ListContentRequest, stream api.Content_ListServer) error {
	var batch []*api.Info
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := stream.Send(&api.ListContentResponse{Info: batch})
		batch = nil
		return err
	}
	err := s.store.Walk(stream.Context(), func(info content.Info) error {
		batch = append(batch, infoToProto(info))
		if len(batch) >= listChunk {
			return flush()
		}
		return nil
	}, req.Filters...)
	if err != nil {
		return err
	}
	return flush()
}

// Delete removes a blob from the namespace.
func (s *Service) Delete(ctx context.Context, req *api.DeleteContentRequest) (*emptypb.Empty, error) {
	dg, err := protoconv.Digest("digest", req.Digest)
	if err != nil {
		return nil, err
	}
	if err := s.store.Delete(ctx, dg); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Read streams a blob from an offset, for a size (0 = to the end).
func (s *Service) Read(req *api.ReadContentRequest, stream api.Content_ReadServer) error {
	ctx := stream.Context()
	dg, err := protoconv.Digest("digest", req.Digest)
	if err != nil {
		return err
	}
	info, err := s.store.Info(ctx, dg)
	if err != nil {
		return err
	}
	ra, err := s.store.ReaderAt(ctx, ocispec.Descriptor{Digest: dg, Size: info.Size})
	if err != nil {
		return err
	}
	defer ra.Close()
	if req.Offset < 0 || req.Size < 0 || req.Offset > ra.Size() {
		return fmt.Errorf("read of %s at offset %d size %d is outside the blob's %d bytes: %w", dg, req.Offset, req.Size, ra.Size(), errdefs.ErrOutOfRange)
	}
	end := ra.Size()
	if req.Size > 0 && req.Offset+req.Size < end {
		end = req.Offset + req.Size
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for off := req.Offset; off < end; {
		n := min(int64(len(*bp)), end-off)
		got, err := ra.ReadAt((*bp)[:n], off)
		if got > 0 {
			if serr := stream.Send(&api.ReadContentResponse{Offset: off, Data: (*bp)[:got]}); serr != nil {
				return serr
			}
			off += int64(got)
		}
		if err != nil && !(errors.Is(err, io.EOF) && off >= end) {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("blob %s ended at %d, before %d: %w", dg, off, end, errdefs.ErrDataLoss)
			}
			return err
		}
	}
	return nil
}

// Status returns one ingest's progress.
func (s *Service) Status(ctx context.Context, req *api.StatusRequest) (*api.StatusResponse, error) {
	st, err := s.store.Status(ctx, req.Ref)
	if err != nil {
		return nil, err
	}
	return &api.StatusResponse{Status: statusToProto(st)}, nil
}

// ListStatuses returns the ingests matching the filters.
func (s *Service) ListStatuses(ctx context.Context, req *api.ListStatusesRequest) (*api.ListStatusesResponse, error) {
	sts, err := s.store.ListStatuses(ctx, req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListStatusesResponse{}
	for _, st := range sts {
		resp.Statuses = append(resp.Statuses, statusToProto(st))
	}
	return resp, nil
}

// Abort cancels an ingest.
func (s *Service) Abort(ctx context.Context, req *api.AbortRequest) (*emptypb.Empty, error) {
	if err := s.store.Abort(ctx, req.Ref); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
