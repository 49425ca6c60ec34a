package content

import (
	"context"
	"errors"
	"fmt"
	"io"

	api "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/internal/protoconv"
)

// Write runs one write session: the first message names the ingest (and may
// give the expected size and digest); then STAT, WRITE and COMMIT messages
// follow, each answered with the ingest's offset. Writes are append-only at
// the current offset; an offset of 0 on a started ingest restarts it.
func (s *Service) Write(stream api.Content_WriteServer) error {
	ctx := stream.Context()
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	if req.Ref == "" {
		return fmt.Errorf("first write message must name the ingest ref: %w", errdefs.ErrInvalidArgument)
	}
	ws := &writeSession{total: req.Total}
	if req.Expected != "" {
		if ws.expected, err = protoconv.Digest("expected", req.Expected); err != nil {
			return err
		}
	}
	w, err := s.store.Writer(ctx, content.WithRef(req.Ref), content.WithDescriptor(ocispec.Descriptor{Size: ws.total, Digest: ws.expected}))
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		resp, err := s.step(ctx, ws, w, req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		if req.Action == api.WriteAction_COMMIT {
			return nil
		}
		if req, err = stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// writeSession is what a Write stream has declared so far.
type writeSession struct {
	total    int64
	expected digest.Digest
}

// step applies one message to the ingest and builds its answer.
func (s *Service) step(ctx context.Context, ws *writeSession, w content.Writer, req *api.WriteContentRequest) (*api.WriteContentResponse, error) {
	st, err := w.Status()
	if err != nil {
		return nil, err
	}
	resp := &api.WriteContentResponse{Action: req.Action, Offset: st.Offset}
	if req.Expected != "" {
		dg, err := protoconv.Digest("expected", req.Expected)
		if err != nil {
			return nil, err
		}
		ws.expected = dg
	}
	if req.Total > 0 {
		ws.total = req.Total
	}
	switch req.Action {
	case api.WriteAction_STAT:
		resp.Digest = w.Digest().String()
		resp.StartedAt = protoconv.Timestamp(st.StartedAt)
		resp.UpdatedAt = protoconv.Timestamp(st.UpdatedAt)
		resp.Total = ws.total
		return resp, nil
	case api.WriteAction_WRITE, api.WriteAction_COMMIT:
	default:
		return nil, fmt.Errorf("write action %v is not STAT, WRITE or COMMIT: %w", req.Action, errdefs.ErrInvalidArgument)
	}
	switch {
	case req.Offset > 0 && req.Offset != st.Offset:
		return nil, fmt.Errorf("write at offset %d must happen at the ingest's offset %d: %w", req.Offset, st.Offset, errdefs.ErrOutOfRange)
	case req.Offset == 0 && st.Offset > 0:
		if err := w.Truncate(0); err != nil {
			return nil, fmt.Errorf("restart ingest %s: %w", st.Ref, err)
		}
		resp.Offset = 0
	}
	if ws.total > 0 && resp.Offset+int64(len(req.Data)) > ws.total {
		return nil, fmt.Errorf("write of %d bytes at offset %d goes past the expected size %d: %w", len(req.Data), resp.Offset, ws.total, errdefs.ErrFailedPrecondition)
	}
	if len(req.Data) > 0 {
		n, err := w.Write(req.Data)
		resp.Offset += int64(n)
		if err != nil {
			return nil, err
		}
	}
	if req.Action == api.WriteAction_COMMIT {
		var opts []content.Opt
		if req.Labels != nil {
			opts = append(opts, content.WithLabels(req.Labels))
		}
		if err := w.Commit(ctx, ws.total, ws.expected, opts...); err != nil {
			return nil, err
		}
	}
	resp.Digest = w.Digest().String()
	return resp, nil
}
