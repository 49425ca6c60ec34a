// Package berthimages serves berth.images.v1.Images: server-side archive
// import and export, unpacking, and Docker-style image summaries.
package berthimages

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/internal/protoconv"
	api "github.com/berthd/berth/proto/berth/images/v1"
)

// Unpacker applies an image's layers into a snapshotter; snapshotter ""
// means the default. It returns the top chain id and the snapshotter used.
type Unpacker interface {
	Unpack(ctx context.Context, img images.Image, snapshotter string, platform platforms.MatchComparer) (chainID, used string, err error)
}

// Service answers berth image calls.
type Service struct {
	api.UnimplementedImagesServer
	content  content.Store
	images   images.Store
	leases   leases.Manager
	events   events.Publisher
	unpacker Unpacker
}

// Options are the stores the service works over. Unpacker may be nil: the
// service then imports without unpacking and refuses Unpack.
type Options struct {
	Content  content.Store
	Images   images.Store
	Leases   leases.Manager
	Events   events.Publisher
	Unpacker Unpacker
}

// New returns the service.
func New(o Options) *Service {
	return &Service{content: o.Content, images: o.Images, leases: o.Leases, events: o.Events, unpacker: o.Unpacker}
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterImagesServer(g, s)
	return nil
}

// platformMatcher parses a platform option; empty means the daemon's own.
func platformMatcher(p string) (platforms.MatchComparer, error) {
	if p == "" {
		return platforms.Default(), nil
	}
	spec, err := platforms.Parse(p)
	if err != nil {
		return nil, fmt.Errorf("platform %q: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	return platforms.Only(spec), nil
}

func descToProto(d ocispec.Descriptor) *api.Descriptor {
	return &api.Descriptor{MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size}
}

// List returns summaries of the images matching the filters.
func (s *Service) List(ctx context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	imgs, err := s.images.List(ctx, req.Filters...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListResponse{}
	for _, img := range imgs {
		resp.Images = append(resp.Images, s.summary(ctx, img, platforms.Default()))
	}
	return resp, nil
}

// summary describes img for platform; problems with its content are
// reported in the summary rather than failing a whole listing.
func (s *Service) summary(ctx context.Context, img images.Image, platform platforms.MatchComparer) *api.Summary {
	sum := &api.Summary{
		Name:          img.Name,
		Target:        descToProto(img.Target),
		Labels:        img.Labels,
		RecordCreated: protoconv.Timestamp(img.CreatedAt),
	}
	if ps, err := images.Platforms(ctx, s.content, img.Target); err == nil {
		for _, p := range ps {
			sum.Platforms = append(sum.Platforms, platforms.Format(p))
		}
	}
	resolved, err := images.ResolveManifest(ctx, s.content, img.Target, platform)
	if err != nil {
		sum.Error = err.Error()
		return sum
	}
	sum.ConfigDigest = resolved.Manifest.Config.Digest.String()
	for _, b := range resolved.Blobs() {
		sum.Size += b.Size
	}
	if cfg, err := images.ReadConfig(ctx, s.content, resolved.Manifest.Config); err == nil && cfg.Created != nil {
		sum.Created = protoconv.Timestamp(*cfg.Created)
	}
	if info, err := s.content.Info(ctx, resolved.Manifest.Config.Digest); err == nil {
		for k := range info.Labels {
			if sn, ok := strings.CutPrefix(k, "containerd.io/gc.ref.snapshot."); ok {
				sum.Unpacked = append(sum.Unpacked, sn)
			}
		}
	}
	return sum
}

// Inspect returns one image's summary, manifest and config.
func (s *Service) Inspect(ctx context.Context, req *api.InspectRequest) (*api.InspectResponse, error) {
	platform, err := platformMatcher(req.Platform)
	if err != nil {
		return nil, err
	}
	img, err := s.images.Get(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	resp := &api.InspectResponse{Summary: s.summary(ctx, img, platform)}
	resolved, err := images.ResolveManifest(ctx, s.content, img.Target, platform)
	if err != nil {
		return resp, nil
	}
	resp.ManifestDescriptor = descToProto(resolved.Descriptor)
	if resp.Manifest, err = json.Marshal(resolved.Manifest); err != nil {
		return nil, err
	}
	cfg, err := images.ReadConfig(ctx, s.content, resolved.Manifest.Config)
	if err != nil {
		return nil, fmt.Errorf("image %q: config: %w", img.Name, err)
	}
	if resp.Config, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	return resp, nil
}

// Unpack applies an image into a snapshotter.
func (s *Service) Unpack(ctx context.Context, req *api.UnpackRequest) (*api.UnpackResponse, error) {
	if s.unpacker == nil {
		return nil, fmt.Errorf("this berthd has no unpacker: %w", errdefs.ErrNotImplemented)
	}
	platform, err := platformMatcher(req.Platform)
	if err != nil {
		return nil, err
	}
	img, err := s.images.Get(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	chainID, used, err := s.unpacker.Unpack(ctx, img, req.Snapshotter, platform)
	if err != nil {
		return nil, err
	}
	return &api.UnpackResponse{ChainId: chainID, Snapshotter: used}, nil
}

func (s *Service) publishCreate(ctx context.Context, img images.Image) {
	if s.events != nil {
		s.events.Publish(ctx, "/images/create", &apievents.ImageCreate{Name: img.Name, Labels: img.Labels})
	}
}
