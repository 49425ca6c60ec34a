// Package transfer serves containerd.services.transfer.v1.Transfer: pulls
// (an OCIRegistry source into an ImageStore destination) and pushes (an
// ImageStore source to an OCIRegistry destination) run in berthd, with
// progress sent to the client over the stream TransferOptions names and
// credentials asked of the client over the stream the registry resolver
// names (both registered through the streaming service).
package transfer

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	"github.com/containerd/containerd/api/types"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/transfer"
	"github.com/berthd/berth/services/transfer/streaming"
)

// Options configure the service.
type Options struct {
	Engine  *transfer.Engine
	Streams *streaming.Manager
	// Events, when set, is told of image records a pull creates or
	// updates.
	Events events.Publisher
	// Unpack makes a pull whose image store names no unpack configuration
	// unpack the pulled platform into the default snapshotter.
	Unpack bool
}

// Service answers Transfer calls.
type Service struct {
	transferapi.UnimplementedTransferServer
	o Options
}

// New returns the service.
func New(o Options) *Service { return &Service{o: o} }

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	transferapi.RegisterTransferServer(g, s)
	return nil
}

// Transfer runs one transfer to its end.
func (s *Service) Transfer(ctx context.Context, req *transferapi.TransferRequest) (*emptypb.Empty, error) {
	src, err := decode("source", req.GetSource())
	if err != nil {
		return nil, err
	}
	dst, err := decode("destination", req.GetDestination())
	if err != nil {
		return nil, err
	}
	var progress transfer.ProgressFunc
	if id := req.GetOptions().GetProgressStream(); id != "" {
		st, err := s.o.Streams.Get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("progress stream: %w", err)
		}
		ps := newProgressSender(st)
		defer ps.close(ctx)
		progress = ps.send
	}
	switch from := src.(type) {
	case *transfertypes.OCIRegistry:
		if to, ok := dst.(*transfertypes.ImageStore); ok {
			return &emptypb.Empty{}, s.pull(ctx, from, to, progress)
		}
	case *transfertypes.ImageStore:
		if to, ok := dst.(*transfertypes.OCIRegistry); ok {
			return &emptypb.Empty{}, s.push(ctx, from, to, progress)
		}
	}
	return nil, fmt.Errorf("transfer from %s to %s: %w", req.GetSource().GetTypeUrl(), req.GetDestination().GetTypeUrl(), errdefs.ErrNotImplemented)
}

func decode(field string, a *anypb.Any) (proto.Message, error) {
	if a == nil {
		return nil, fmt.Errorf("transfer %s is missing: %w", field, errdefs.ErrInvalidArgument)
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("transfer %s of type %s: %v: %w", field, a.GetTypeUrl(), err, errdefs.ErrNotImplemented)
	}
	return m, nil
}

func (s *Service) pull(ctx context.Context, from *transfertypes.OCIRegistry, to *transfertypes.ImageStore, progress transfer.ProgressFunc) error {
	reg, done, err := s.registry(ctx, from)
	if err != nil {
		return err
	}
	defer done()
	req := transfer.PullRequest{
		Ref:       from.GetReference(),
		Registry:  reg,
		Name:      to.GetName(),
		Labels:    to.GetLabels(),
		Platforms: platformsFromProto(to.GetPlatforms()),
		Progress:  progress,
	}
	// containerd's image store pulls every platform when it names none.
	req.AllPlatforms = len(req.Platforms) == 0
	for _, u := range to.GetUnpacks() {
		t := transfer.UnpackTarget{Snapshotter: u.GetSnapshotter()}
		if p := u.GetPlatform(); p != nil && p.GetOS() != "" {
			t.Platform = platformFromProto(p)
		} else {
			// The pulled platform; an all-platforms pull of an image
			// without the host's is not unpacked rather than failed.
			t.Optional = req.AllPlatforms
		}
		req.Unpack = append(req.Unpack, t)
	}
	if len(req.Unpack) == 0 && s.o.Unpack {
		req.Unpack = []transfer.UnpackTarget{{Optional: true}}
	}
	res, err := s.o.Engine.Pull(ctx, req)
	if err != nil {
		return err
	}
	s.publish(ctx, res.Image, res.Created)
	return nil
}

func (s *Service) push(ctx context.Context, from *transfertypes.ImageStore, to *transfertypes.OCIRegistry, progress transfer.ProgressFunc) error {
	reg, done, err := s.registry(ctx, to)
	if err != nil {
		return err
	}
	defer done()
	_, err = s.o.Engine.Push(ctx, transfer.PushRequest{
		Name:      from.GetName(),
		Ref:       to.GetReference(),
		Registry:  reg,
		Platforms: platformsFromProto(from.GetPlatforms()),
		Progress:  progress,
	})
	return err
}

// registry turns the client's resolver settings into the engine's; done
// closes the credential stream, if any.
func (s *Service) registry(ctx context.Context, r *transfertypes.OCIRegistry) (transfer.Registry, func(), error) {
	if r.GetReference() == "" {
		return transfer.Registry{}, nil, fmt.Errorf("registry reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	res := r.GetResolver()
	reg := transfer.Registry{HostDir: res.GetHostDir()}
	switch res.GetDefaultScheme() {
	case "", "https":
	case "http":
		reg.PlainHTTP = true
	default:
		return reg, nil, fmt.Errorf("registry default scheme %q: not http or https: %w", res.GetDefaultScheme(), errdefs.ErrInvalidArgument)
	}
	if len(res.GetHeaders()) > 0 {
		reg.Header = http.Header{}
		for k, v := range res.GetHeaders() {
			reg.Header.Set(k, v)
		}
	}
	done := func() {}
	if id := res.GetAuthStream(); id != "" {
		st, err := s.o.Streams.Get(ctx, id)
		if err != nil {
			return reg, nil, fmt.Errorf("credential stream: %w", err)
		}
		ask := &credentialAsker{stream: st, ref: r.GetReference(), cache: map[string]credentialAnswer{}}
		reg.Credentials = ask.get
		done = func() { st.Close() }
	}
	return reg, done, nil
}

func (s *Service) publish(ctx context.Context, img images.Image, created bool) {
	if s.o.Events == nil {
		return
	}
	if created {
		s.o.Events.Publish(ctx, "/images/create", &apievents.ImageCreate{Name: img.Name, Labels: img.Labels})
		return
	}
	s.o.Events.Publish(ctx, "/images/update", &apievents.ImageUpdate{Name: img.Name, Labels: img.Labels})
}

func platformFromProto(p *types.Platform) ocispec.Platform {
	return platforms.Normalize(ocispec.Platform{OS: p.GetOS(), Architecture: p.GetArchitecture(), Variant: p.GetVariant(), OSVersion: p.GetOsVersion()})
}

func platformsFromProto(ps []*types.Platform) []ocispec.Platform {
	var out []ocispec.Platform
	for _, p := range ps {
		out = append(out, platformFromProto(p))
	}
	return out
}

// progressQueue bounds the events waiting for a slow client; past it,
// byte counts are dropped (the next one supersedes them) while state
// changes still wait their turn.
const progressQueue = 256

// progressSender sends progress events to the client from a goroutine of
// its own, so a slow client never holds up the transfer.
type progressSender struct {
	stream streaming.Stream
	ch     chan *transfertypes.Progress
	done   chan struct{}
	once   sync.Once
}

func newProgressSender(st streaming.Stream) *progressSender {
	ps := &progressSender{stream: st, ch: make(chan *transfertypes.Progress, progressQueue), done: make(chan struct{})}
	go ps.run()
	return ps
}

func (ps *progressSender) run() {
	defer close(ps.done)
	failed := false
	for p := range ps.ch {
		if failed {
			continue // drain: the client is gone
		}
		a, err := anypb.New(p)
		if err == nil {
			err = ps.stream.Send(a)
		}
		failed = err != nil
	}
}

func (ps *progressSender) send(p transfer.Progress) {
	msg := &transfertypes.Progress{Event: p.Event, Name: p.Name, Parents: p.Parents, Progress: p.Progress, Total: p.Total}
	if p.Desc != nil {
		msg.Desc = &types.Descriptor{MediaType: p.Desc.MediaType, Digest: p.Desc.Digest.String(), Size: p.Desc.Size, Annotations: p.Desc.Annotations}
	}
	switch p.Event {
	case transfer.EventDownloading, transfer.EventUploading, transfer.EventExtracting, transfer.EventCompressing:
		select {
		case ps.ch <- msg:
		default:
		}
	default:
		ps.ch <- msg
	}
}

// close sends what is queued (for a little while at most once the request
// is over) and ends the stream.
func (ps *progressSender) close(ctx context.Context) {
	ps.once.Do(func() {
		close(ps.ch)
		select {
		case <-ps.done:
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
		ps.stream.Close()
	})
}
