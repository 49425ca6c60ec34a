package berthcontainers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/run"
	"github.com/berthd/berth/internal/protoconv"
	api "github.com/berthd/berth/proto/berth/containers/v1"
)

// chunkSize bounds the data in one streamed message.
const chunkSize = 256 << 10

// chunkWriter sends what is written as messages of at most chunkSize.
type chunkWriter struct {
	send func([]byte) error
	buf  []byte
}

func newChunkWriter(send func([]byte) error) *chunkWriter {
	return &chunkWriter{send: send, buf: make([]byte, 0, chunkSize)}
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), chunkSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == chunkSize {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Commit makes an image of a container.
func (s *Service) Commit(ctx context.Context, req *api.CommitRequest) (*api.CommitResponse, error) {
	res, err := s.m.Commit(ctx, req.Id, run.CommitOptions{
		Reference: req.Reference, Message: req.Message, Author: req.Author, Changes: req.Changes, Pause: !req.NoPause,
	})
	if err != nil {
		return nil, err
	}
	return &api.CommitResponse{Id: res.ImageID.String(), Name: res.Name, ManifestDigest: res.Manifest.Digest.String()}, nil
}

// Diff lists a container's changes.
func (s *Service) Diff(ctx context.Context, req *api.ContainerRequest) (*api.DiffResponse, error) {
	changes, err := s.m.Diff(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	resp := &api.DiffResponse{}
	for _, c := range changes {
		resp.Changes = append(resp.Changes, &api.Change{Kind: c.Kind.String(), Path: c.Path})
	}
	return resp, nil
}

func statToProto(st run.PathStat) *api.PathStat {
	return &api.PathStat{Name: st.Name, Size: st.Size, Mode: uint32(st.Mode), Mtime: protoconv.Timestamp(st.ModTime), LinkTarget: st.LinkTarget}
}

// StatPath describes a path of a container.
func (s *Service) StatPath(ctx context.Context, req *api.CopyFromRequest) (*api.PathStat, error) {
	st, err := s.m.StatPath(ctx, req.Id, req.Path, req.FollowLink)
	if err != nil {
		return nil, err
	}
	return statToProto(st), nil
}

// CopyFrom streams a path of a container as a tar.
func (s *Service) CopyFrom(req *api.CopyFromRequest, stream api.Containers_CopyFromServer) error {
	w := newChunkWriter(func(b []byte) error { return stream.Send(&api.CopyFromResponse{Data: b}) })
	err := s.m.CopyFrom(stream.Context(), req.Id, req.Path, req.FollowLink, func(st run.PathStat) error {
		return stream.Send(&api.CopyFromResponse{Stat: statToProto(st)})
	}, w)
	if err != nil {
		return err
	}
	return w.flush()
}

// streamReader reads the data of a client stream's messages.
type streamReader struct {
	recv func() ([]byte, error)
	buf  []byte
}

func (r *streamReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		b, err := r.recv()
		if err != nil {
			return 0, err
		}
		r.buf = b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// CopyTo extracts a client's tar into a container.
func (s *Service) CopyTo(stream api.Containers_CopyToServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return fmt.Errorf("the first copy message must name the container and path: %w", errdefs.ErrInvalidArgument)
	}
	r := &streamReader{buf: first.Data, recv: func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		return m.Data, nil
	}}
	if err := s.m.CopyTo(stream.Context(), open.Id, open.Path, r); err != nil {
		return err
	}
	// Read to the client's end, so it sees the result, not a broken pipe.
	_, _ = io.Copy(io.Discard, r)
	return stream.SendAndClose(&emptypb.Empty{})
}

// Export streams a container's filesystem as a tar.
func (s *Service) Export(req *api.ContainerRequest, stream api.Containers_ExportServer) error {
	w := newChunkWriter(func(b []byte) error { return stream.Send(&api.Chunk{Data: b}) })
	if err := s.m.Export(stream.Context(), req.Id, w); err != nil {
		return err
	}
	return w.flush()
}

// Top lists a container's processes.
func (s *Service) Top(ctx context.Context, req *api.TopRequest) (*api.TopResponse, error) {
	titles, rows, err := s.m.Top(ctx, req.Id, req.PsArgs)
	if err != nil {
		return nil, err
	}
	resp := &api.TopResponse{Titles: titles}
	for _, r := range rows {
		resp.Processes = append(resp.Processes, &api.ProcessRow{Fields: r})
	}
	return resp, nil
}

// statsInterval is the time between Stats samples.
const statsInterval = time.Second

// Stats streams containers' resource use.
func (s *Service) Stats(req *api.StatsRequest, stream api.Containers_StatsServer) error {
	interval := statsInterval
	if !req.Stream {
		// One sample needs a previous one for the CPU share; half a
		// second keeps `stats --no-stream` quick.
		interval = statsInterval / 2
	}
	err := s.m.Stats(stream.Context(), req.Ids, req.Stream, interval, func(samples []run.StatsSample) error {
		resp := &api.StatsResponse{}
		for _, x := range samples {
			resp.Stats = append(resp.Stats, &api.Stats{
				Id: x.ID, Name: x.Name, CpuPercent: x.CPUPercent, MemoryUsage: x.MemoryUsage, MemoryLimit: x.MemoryLimit,
				Pids: x.Pids, NetRx: x.NetRx, NetTx: x.NetTx, BlockRead: x.BlockRead, BlockWrite: x.BlockWrite,
				Read: protoconv.Timestamp(x.Read),
			})
		}
		return stream.Send(resp)
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
