// Package snapshots serves containerd.services.snapshots.v1.Snapshots over
// the snapshotters a lookup function finds by name. In berthd those are the
// namespaced snapshotters of core/metadata; in an external snapshotter
// process (cmd/berth-native-snapshotter) it is one raw snapshotter.
package snapshots

import (
	"context"
	"fmt"
	"log/slog"

	apievents "github.com/containerd/containerd/api/events"
	api "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/internal/protoconv"
)

// listChunk is the most infos one List response carries, keeping each
// message far below the gRPC size limit however many snapshots there are.
const listChunk = 100

// Event topics, containerd's.
const (
	TopicPrepare = "/snapshot/prepare"
	TopicCommit  = "/snapshot/commit"
	TopicRemove  = "/snapshot/remove"
)

// Lookup returns the snapshotter called name. For a name it does not know
// it returns nil or an error wrapping errdefs.ErrNotFound.
type Lookup func(name string) (snapshots.Snapshotter, error)

// Service answers snapshot calls.
type Service struct {
	api.UnimplementedSnapshotsServer
	lookup Lookup
	events events.Publisher
}

// New returns the service over the snapshotters lookup finds. pub may be
// nil; otherwise prepare, commit and remove events are published on it.
func New(lookup Lookup, pub events.Publisher) *Service {
	return &Service{lookup: lookup, events: pub}
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterSnapshotsServer(g, s)
	return nil
}

// snapshotter resolves a request's snapshotter name.
func (s *Service) snapshotter(name string) (snapshots.Snapshotter, error) {
	if name == "" {
		return nil, fmt.Errorf("snapshotter name is required: %w", errdefs.ErrInvalidArgument)
	}
	sn, err := s.lookup(name)
	if err != nil {
		return nil, fmt.Errorf("snapshotter %q: %w", name, err)
	}
	if sn == nil {
		return nil, fmt.Errorf("snapshotter %q is not loaded: %w", name, errdefs.ErrNotFound)
	}
	return sn, nil
}

// labelOpts turns request labels into creation options.
func labelOpts(labels map[string]string) []snapshots.Opt {
	if len(labels) == 0 {
		return nil
	}
	return []snapshots.Opt{snapshots.WithLabels(labels)}
}

// Prepare creates an active snapshot.
func (s *Service) Prepare(ctx context.Context, req *api.PrepareSnapshotRequest) (*api.PrepareSnapshotResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	mounts, err := sn.Prepare(ctx, req.Key, req.Parent, labelOpts(req.Labels)...)
	if err != nil {
		return nil, err
	}
	s.publish(ctx, TopicPrepare, &apievents.SnapshotPrepare{Key: req.Key, Parent: req.Parent, Snapshotter: req.Snapshotter})
	return &api.PrepareSnapshotResponse{Mounts: protoconv.MountsToProto(mounts)}, nil
}

// View creates a read-only snapshot. Like containerd, no event is
// published for views.
func (s *Service) View(ctx context.Context, req *api.ViewSnapshotRequest) (*api.ViewSnapshotResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	mounts, err := sn.View(ctx, req.Key, req.Parent, labelOpts(req.Labels)...)
	if err != nil {
		return nil, err
	}
	return &api.ViewSnapshotResponse{Mounts: protoconv.MountsToProto(mounts)}, nil
}

// Mounts returns the mounts of an active or view snapshot.
func (s *Service) Mounts(ctx context.Context, req *api.MountsRequest) (*api.MountsResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	mounts, err := sn.Mounts(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	return &api.MountsResponse{Mounts: protoconv.MountsToProto(mounts)}, nil
}

// Commit turns an active snapshot into a committed one. A parent in the
// request rebases a snapshot prepared without one.
func (s *Service) Commit(ctx context.Context, req *api.CommitSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	opts := labelOpts(req.Labels)
	if req.Parent != "" {
		parent := req.Parent
		opts = append(opts, func(info *snapshots.Info) error {
			info.Parent = parent
			return nil
		})
	}
	if err := sn.Commit(ctx, req.Name, req.Key, opts...); err != nil {
		return nil, err
	}
	s.publish(ctx, TopicCommit, &apievents.SnapshotCommit{Key: req.Key, Name: req.Name, Snapshotter: req.Snapshotter})
	return &emptypb.Empty{}, nil
}

// Remove deletes a snapshot without children.
func (s *Service) Remove(ctx context.Context, req *api.RemoveSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	if err := sn.Remove(ctx, req.Key); err != nil {
		return nil, err
	}
	s.publish(ctx, TopicRemove, &apievents.SnapshotRemove{Key: req.Key, Snapshotter: req.Snapshotter})
	return &emptypb.Empty{}, nil
}

// Stat describes one snapshot.
func (s *Service) Stat(ctx context.Context, req *api.StatSnapshotRequest) (*api.StatSnapshotResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	info, err := sn.Stat(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	return &api.StatSnapshotResponse{Info: protoconv.SnapshotInfoToProto(info)}, nil
}

// Update changes a snapshot's labels; the mask's paths are "labels" or
// "labels.<key>" (none: all labels). The snapshotter rejects other paths.
func (s *Service) Update(ctx context.Context, req *api.UpdateSnapshotRequest) (*api.UpdateSnapshotResponse, error) {
	if req.Info == nil {
		return nil, fmt.Errorf("info is required: %w", errdefs.ErrInvalidArgument)
	}
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	info, err := sn.Update(ctx, protoconv.SnapshotInfoFromProto(req.Info), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	return &api.UpdateSnapshotResponse{Info: protoconv.SnapshotInfoToProto(info)}, nil
}

// List streams the snapshots matching any filter, listChunk per message.
func (s *Service) List(req *api.ListSnapshotsRequest, stream api.Snapshots_ListServer) error {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return err
	}
	batch := make([]*api.Info, 0, listChunk)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := stream.Send(&api.ListSnapshotsResponse{Info: batch})
		// gRPC may still read a sent message (stats handlers), so
		// the next batch gets its own slice.
		batch = make([]*api.Info, 0, listChunk)
		return err
	}
	err = sn.Walk(stream.Context(), func(_ context.Context, info snapshots.Info) error {
		batch = append(batch, protoconv.SnapshotInfoToProto(info))
		if len(batch) == listChunk {
			return flush()
		}
		return nil
	}, req.Filters...)
	if err != nil {
		return err
	}
	return flush()
}

// Usage is the disk used by one snapshot on its own.
func (s *Service) Usage(ctx context.Context, req *api.UsageRequest) (*api.UsageResponse, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	u, err := sn.Usage(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	return &api.UsageResponse{Size: u.Size, Inodes: u.Inodes}, nil
}

// Cleanup removes what removed snapshots left on disk, for snapshotters
// that delete in the background.
func (s *Service) Cleanup(ctx context.Context, req *api.CleanupRequest) (*emptypb.Empty, error) {
	sn, err := s.snapshotter(req.Snapshotter)
	if err != nil {
		return nil, err
	}
	c, ok := sn.(snapshots.Cleaner)
	if !ok {
		return nil, fmt.Errorf("snapshotter %q has no cleanup: %w", req.Snapshotter, errdefs.ErrNotImplemented)
	}
	if err := c.Cleanup(ctx); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// publish sends an event when the service has a publisher. A failed
// publish does not fail the call: the snapshot change has happened.
func (s *Service) publish(ctx context.Context, topic string, ev any) {
	if s.events == nil {
		return
	}
	if err := s.events.Publish(ctx, topic, ev); err != nil {
		slog.Warn("publish snapshot event", "topic", topic, "error", err)
	}
}
