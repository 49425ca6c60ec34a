// Package proxy is a snapshotter served by another process over the
// containerd snapshots gRPC API (containerd.services.snapshots.v1): every
// call is forwarded, and gRPC status codes come back as errdefs errors, so
// callers cannot tell it from a built-in snapshotter. plugin.go makes it a
// berthd plugin for each [proxy_plugins.<name>] of type "snapshot".
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	api "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/internal/errgrpc"
	"github.com/berthd/berth/internal/protoconv"
)

// Snapshotter forwards snapshot calls to a remote snapshots service. It
// implements snapshots.Snapshotter and snapshots.Cleaner.
type Snapshotter struct {
	client api.SnapshotsClient
	name   string
	target string

	// conn is closed by Close when the snapshotter owns it (plugin.go).
	conn      io.Closer
	closeOnce sync.Once
	closeErr  error
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// New returns a snapshotter forwarding to the snapshotter called name of
// the snapshots service at the other end of conn. The caller keeps
// ownership of conn: Close does not close it.
func New(conn *grpc.ClientConn, name string) *Snapshotter {
	return &Snapshotter{client: api.NewSnapshotsClient(conn), name: name, target: conn.Target()}
}

// outgoing copies the namespace and lease of ctx into the request headers,
// as a containerd client would send them: a remote service that keeps
// namespaced or leased records sees the caller's.
func outgoing(ctx context.Context) context.Context {
	ns, hasNS := namespaces.Namespace(ctx)
	lease, hasLease := leases.FromContext(ctx)
	if !hasNS && !hasLease {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	if hasNS {
		md.Set(namespaces.GRPCHeader, ns)
	}
	if hasLease {
		md.Set(leases.GRPCHeader, lease)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// fromGRPC turns a call's status back into an errdefs error. When the
// remote cannot be reached the error says which snapshotter and where,
// since the transport's message names neither.
func (s *Snapshotter) fromGRPC(err error) error {
	err = errgrpc.ToNative(err)
	if errors.Is(err, errdefs.ErrUnavailable) {
		return fmt.Errorf("remote snapshotter %q at %s: %w", s.name, s.target, err)
	}
	return err
}

// applyOpts collects what opts set: labels, and for Commit a parent.
func applyOpts(opts []snapshots.Opt) (snapshots.Info, error) {
	var info snapshots.Info
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return snapshots.Info{}, err
		}
	}
	return info, nil
}

// Stat describes the snapshot key.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	resp, err := s.client.Stat(outgoing(ctx), &api.StatSnapshotRequest{Snapshotter: s.name, Key: key})
	if err != nil {
		return snapshots.Info{}, s.fromGRPC(err)
	}
	return protoconv.SnapshotInfoFromProto(resp.Info), nil
}

// Update changes the labels named by fieldpaths ("labels", "labels.<key>";
// none: all labels).
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	req := &api.UpdateSnapshotRequest{Snapshotter: s.name, Info: protoconv.SnapshotInfoToProto(info)}
	if len(fieldpaths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: fieldpaths}
	}
	resp, err := s.client.Update(outgoing(ctx), req)
	if err != nil {
		return snapshots.Info{}, s.fromGRPC(err)
	}
	return protoconv.SnapshotInfoFromProto(resp.Info), nil
}

// Usage is the disk used by the snapshot itself.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	resp, err := s.client.Usage(outgoing(ctx), &api.UsageRequest{Snapshotter: s.name, Key: key})
	if err != nil {
		return snapshots.Usage{}, s.fromGRPC(err)
	}
	return snapshots.Usage{Size: resp.Size, Inodes: resp.Inodes}, nil
}

// Mounts returns the mounts of an active or view snapshot.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	resp, err := s.client.Mounts(outgoing(ctx), &api.MountsRequest{Snapshotter: s.name, Key: key})
	if err != nil {
		return nil, s.fromGRPC(err)
	}
	return protoconv.MountsFromProto(resp.Mounts), nil
}

// Prepare creates a writable snapshot on top of parent.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	info, err := applyOpts(opts)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Prepare(outgoing(ctx), &api.PrepareSnapshotRequest{
		Snapshotter: s.name, Key: key, Parent: parent, Labels: info.Labels,
	})
	if err != nil {
		return nil, s.fromGRPC(err)
	}
	return protoconv.MountsFromProto(resp.Mounts), nil
}

// View creates a read-only snapshot of parent.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	info, err := applyOpts(opts)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.View(outgoing(ctx), &api.ViewSnapshotRequest{
		Snapshotter: s.name, Key: key, Parent: parent, Labels: info.Labels,
	})
	if err != nil {
		return nil, s.fromGRPC(err)
	}
	return protoconv.MountsFromProto(resp.Mounts), nil
}

// Commit turns the active snapshot key into the committed snapshot name.
// A parent set by an option is sent along, for rebasing.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	info, err := applyOpts(opts)
	if err != nil {
		return err
	}
	_, err = s.client.Commit(outgoing(ctx), &api.CommitSnapshotRequest{
		Snapshotter: s.name, Name: name, Key: key, Labels: info.Labels, Parent: info.Parent,
	})
	return s.fromGRPC(err)
}

// Remove deletes a snapshot that has no children.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	_, err := s.client.Remove(outgoing(ctx), &api.RemoveSnapshotRequest{Snapshotter: s.name, Key: key})
	return s.fromGRPC(err)
}

// Walk calls fn for each snapshot matching any of filters, as the List
// stream delivers them. When fn fails the stream is cancelled at once.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	sctx, cancel := context.WithCancel(outgoing(ctx))
	defer cancel()
	stream, err := s.client.List(sctx, &api.ListSnapshotsRequest{Snapshotter: s.name, Filters: filters})
	if err != nil {
		return s.fromGRPC(err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return s.fromGRPC(err)
		}
		for _, info := range resp.Info {
			if err := fn(ctx, protoconv.SnapshotInfoFromProto(info)); err != nil {
				return err
			}
		}
	}
}

// Cleanup asks the remote snapshotter to delete what removed snapshots
// left behind; ErrNotImplemented when it has no such step.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	_, err := s.client.Cleanup(outgoing(ctx), &api.CleanupRequest{Snapshotter: s.name})
	return s.fromGRPC(err)
}

// Close closes the connection when the snapshotter owns it (a proxy
// plugin's); the remote snapshotter itself keeps running. Calling it again
// returns the first result.
func (s *Snapshotter) Close() error {
	s.closeOnce.Do(func() {
		if s.conn != nil {
			s.closeErr = s.conn.Close()
		}
	})
	return s.closeErr
}
