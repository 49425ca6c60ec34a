package transfer

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/reference"
	"github.com/berthd/berth/core/remotes"
)

// PushRequest describes one push.
type PushRequest struct {
	// Name is the image record to push.
	Name string
	// Ref is where to push it; default Name.
	Ref      string
	Registry Registry
	// Platforms, when set, push only the manifest of a multi-platform
	// image that best matches them, as a single-platform image.
	Platforms []ocispec.Platform
	// Progress, when set, receives progress events.
	Progress ProgressFunc
}

// PushResult is what a push sent.
type PushResult struct {
	// Ref is the normalised reference pushed to.
	Ref string
	// Target is the root pushed: the image's own, or a manifest (and
	// index) naming compressed layers where the image had uncompressed
	// ones.
	Target   ocispec.Descriptor
	Duration time.Duration
}

// Push sends the image record req.Name to req.Ref: blobs the repository
// lacks (mounted from another repository of the registry when one is
// known to hold them), then manifests, the root tagged. Uncompressed
// layers are sent gzip-compressed, once: see LabelCompressedGzip.
func (e *Engine) Push(ctx context.Context, req PushRequest) (*PushResult, error) {
	start := time.Now()
	if req.Name == "" {
		return nil, fmt.Errorf("push: no image named: %w", errdefs.ErrInvalidArgument)
	}
	to := req.Ref
	if to == "" {
		to = req.Name
	}
	ref, err := reference.ParseNormalized(to)
	if err != nil {
		return nil, err
	}
	img, err := e.cfg.Images.Get(ctx, req.Name)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", req.Name, err)
	}
	ctx, done, err := e.withLease(ctx, "push")
	if err != nil {
		return nil, err
	}
	defer done()
	tr := newTracker(req.Progress, EventUploading)

	root := img.Target
	if len(req.Platforms) > 0 {
		m, err := images.ResolveManifest(ctx, e.cfg.Content, root, platforms.Ordered(req.Platforms...))
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", req.Name, err)
		}
		root = m.Descriptor
		root.Platform = nil
	}
	if root, err = e.compressTree(ctx, root, tr, 0); err != nil {
		return nil, fmt.Errorf("push %s: %w", req.Name, err)
	}
	tr.status(Progress{Event: fmt.Sprintf("pushing %s to %s", root.Digest, ref)})
	err = e.resolver(req.Registry).Push(ctx, ref.String(), e.cfg.Content, root, remotes.PushOptions{Progress: tr.transferred})
	if errdefs.IsNotFound(err) && images.IsIndexType(root.MediaType) {
		// Typically an image pulled or imported for some platforms only.
		return nil, fmt.Errorf("%w (the image lacks the content of some of its platforms: push one platform, or pull all of them first)", err)
	}
	if err != nil {
		return nil, err
	}
	tr.status(Progress{Event: EventPushed, Name: ref.String(), Desc: &root})
	return &PushResult{Ref: ref.String(), Target: root, Duration: time.Since(start)}, nil
}
