package transfer

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/reference"
	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/core/unpack"
)

// UnpackTarget asks a pull to unpack one platform into one snapshotter.
type UnpackTarget struct {
	// Platform to unpack; zero means the platform pulled (the first of
	// PullRequest.Platforms, else the host's).
	Platform ocispec.Platform
	// Snapshotter name; "" means the namespace's default.
	Snapshotter string
	// Optional targets are skipped, not failed, when the image has no
	// manifest for the platform (an all-platforms pull unpacking the
	// host's platform by default).
	Optional bool
}

// PullRequest describes one pull.
type PullRequest struct {
	// Ref is the reference to pull, in Docker's normalised form
	// ("busybox" is docker.io/library/busybox:latest).
	Ref      string
	Registry Registry
	// Name is the image record to create or update; default the
	// normalised Ref.
	Name string
	// Labels are set on the image record.
	Labels map[string]string
	// Platforms choose the manifest of a multi-platform image: the best
	// match is pulled. Empty means the host's platform.
	Platforms []ocispec.Platform
	// AllPlatforms pulls every manifest of an index.
	AllPlatforms bool
	// Unpack lists where to unpack; empty means no unpack.
	Unpack []UnpackTarget
	// Progress, when set, receives progress events.
	Progress ProgressFunc
}

// Unpacked is one unpack a pull made.
type Unpacked struct {
	Snapshotter string
	// Manifest is the platform manifest unpacked.
	Manifest ocispec.Descriptor
	// ChainID names the top snapshot: the image's root filesystem.
	ChainID digest.Digest
	// Layers and Applied: how many layers the image has and how many this
	// pull extracted (the others were present already).
	Layers, Applied int
}

// PullResult is what a pull made.
type PullResult struct {
	Image images.Image
	// Created is false when an existing record was updated.
	Created  bool
	Unpacked []Unpacked
	// Duration is the time the pull took.
	Duration time.Duration
}

// Pull fetches req.Ref into the store, unpacking layers as they land, and
// creates or updates the image record. On failure no record is written and
// what was fetched is left to garbage collection.
func (e *Engine) Pull(ctx context.Context, req PullRequest) (*PullResult, error) {
	start := time.Now()
	ref, err := reference.ParseNormalized(req.Ref)
	if err != nil {
		return nil, err
	}
	name := req.Name
	if name == "" {
		name = ref.String()
	}
	if len(req.Unpack) > 0 && (e.cfg.Unpacker == nil || e.cfg.Snapshotter == nil) {
		return nil, fmt.Errorf("pull %s: unpacking was asked for, but this berthd has no unpacker: %w", ref, errdefs.ErrNotImplemented)
	}
	ctx, done, err := e.withLease(ctx, "pull")
	if err != nil {
		return nil, err
	}
	defer done()
	tr := newTracker(req.Progress, EventDownloading)
	tr.layersCommit = true
	hooks, err := e.unpackHooks(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if len(hooks.hooks) > 0 {
		// Extracting ahead serves one overlayfs unpack: each of its layers
		// is a directory of its own.
		stage := len(hooks.hooks) == 1 && hooks.hooks[0].name == "overlayfs"
		tr.ahead = newAhead(ctx, e.cfg.ScratchDir, e.cfg.Content, e.inflaters, stage, tr)
		defer tr.ahead.close()
	}
	ctx = withTracker(ctx, tr)

	target, err := e.fetch(ctx, ref, req, tr, hooks)
	if err != nil {
		return nil, err
	}
	unpacked, err := hooks.finish(ctx, e, target)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	for _, u := range unpacked {
		tr.status(Progress{Event: EventUnpacked, Name: u.Snapshotter, Progress: int64(u.Applied), Total: int64(u.Layers), Desc: &u.Manifest})
	}
	img, created, err := e.saveRecord(ctx, images.Image{Name: name, Target: target, Labels: req.Labels})
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	tr.status(Progress{Event: EventSaved, Name: img.Name, Desc: &img.Target})
	e.log.DebugContext(ctx, "image pulled", "ref", ref.String(), "target", target.Digest, "duration", time.Since(start))
	return &PullResult{Image: img, Created: created, Unpacked: unpacked, Duration: time.Since(start)}, nil
}

// fetch resolves ref, then fetches its content by the resolved digest, so
// that a tag moved meanwhile cannot mix two images.
func (e *Engine) fetch(ctx context.Context, ref reference.Reference, req PullRequest, tr *tracker, hooks *hookSet) (ocispec.Descriptor, error) {
	r := e.resolver(req.Registry)
	tr.status(Progress{Event: EventResolving, Name: ref.String()})
	_, root, err := r.Resolve(ctx, ref.String())
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	tr.status(Progress{Event: EventResolved, Name: ref.String(), Desc: &root})
	opts := remotes.FetchOptions{
		Platforms:    pullPlatforms(req),
		AllPlatforms: req.AllPlatforms,
		Progress:     tr.transferred,
		ManifestHook: func(_ context.Context, desc ocispec.Descriptor, m ocispec.Manifest) {
			tr.children(desc, append([]ocispec.Descriptor{m.Config}, m.Layers...))
			if hooks.wants(desc) {
				tr.ahead.manifest(desc, m)
			}
		},
	}
	// The layer hook runs once a layer is verified and stored: report it
	// complete, then offer it to the unpacks.
	opts.LayerHook = func(ctx context.Context, manifest ocispec.Descriptor, index int, layer ocispec.Descriptor) error {
		tr.committed(layer)
		tr.ahead.landed(manifest, index, layer)
		return hooks.layer(ctx, manifest, index, layer)
	}
	img, err := r.Fetch(ctx, ref.Name()+"@"+root.Digest.String(), e.cfg.Content, opts)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return img.Target, nil
}

func pullPlatforms(req PullRequest) platforms.MatchComparer {
	if len(req.Platforms) == 0 {
		return platforms.Default()
	}
	return platforms.Ordered(req.Platforms...)
}

// hookSet is a pull's unpacks: each layer that lands is offered to every
// one of them.
type hookSet struct {
	hooks []pullHook
}

type pullHook struct {
	target   UnpackTarget
	name     string
	platform platforms.MatchComparer
	hook     *unpack.Hook
}

func (e *Engine) unpackHooks(ctx context.Context, req PullRequest) (*hookSet, error) {
	hs := &hookSet{}
	seen := map[string]bool{}
	for _, t := range req.Unpack {
		name, sn, err := e.cfg.Snapshotter(ctx, t.Snapshotter)
		if err != nil {
			return nil, fmt.Errorf("unpack into %q: %w", t.Snapshotter, err)
		}
		pm := pullPlatforms(req)
		label := "default"
		if t.Platform.OS != "" {
			pm = platforms.Only(platforms.Normalize(t.Platform))
			label = platforms.Format(t.Platform)
		}
		key := name + " " + label
		if seen[key] {
			continue
		}
		seen[key] = true
		h := e.cfg.Unpacker.Hook(name, sn, unpack.WithPlatform(pm))
		hs.hooks = append(hs.hooks, pullHook{target: t, name: name, platform: pm, hook: h})
	}
	return hs, nil
}

// wants reports whether some unpack may use manifest (one of another
// platform is only fetched, as in an all-platforms pull).
func (hs *hookSet) wants(manifest ocispec.Descriptor) bool {
	for _, h := range hs.hooks {
		if manifest.Platform == nil || h.platform.Match(*manifest.Platform) {
			return true
		}
	}
	return false
}

// layer offers a landed layer to every unpack; a manifest of another
// platform than an unpack's is ignored by it.
func (hs *hookSet) layer(ctx context.Context, manifest ocispec.Descriptor, index int, layer ocispec.Descriptor) error {
	for _, h := range hs.hooks {
		if err := h.hook.Layer(ctx, manifest, index, layer); err != nil {
			return fmt.Errorf("unpack into %s: %w", h.name, err)
		}
	}
	return nil
}

// finish completes every unpack once the content is all there.
func (hs *hookSet) finish(ctx context.Context, e *Engine, target ocispec.Descriptor) ([]Unpacked, error) {
	var out []Unpacked
	for _, h := range hs.hooks {
		if h.target.Optional {
			if _, err := images.ResolveManifest(ctx, e.cfg.Content, target, h.platform); errdefs.IsNotFound(err) {
				e.log.DebugContext(ctx, "pulled image has no manifest for the unpack platform; not unpacked", "target", target.Digest, "error", err)
				continue
			}
		}
		res, err := h.hook.Finish(ctx, target)
		if err != nil {
			return nil, err
		}
		out = append(out, Unpacked{Snapshotter: h.name, Manifest: res.Manifest, ChainID: res.ChainID, Layers: res.Layers, Applied: res.Applied})
	}
	return out, nil
}

// saveRecord points the image record at target: a new record, or an
// existing one whose target (and the labels given) change.
func (e *Engine) saveRecord(ctx context.Context, img images.Image) (images.Image, bool, error) {
	created, err := e.cfg.Images.Create(ctx, img)
	if err == nil {
		return created, true, nil
	}
	if !errdefs.IsAlreadyExists(err) {
		return images.Image{}, false, fmt.Errorf("create image record %s: %w", img.Name, err)
	}
	fields := []string{"target"}
	for k := range maps.Keys(img.Labels) {
		fields = append(fields, "labels."+k)
	}
	updated, err := e.cfg.Images.Update(ctx, img, fields...)
	if err != nil {
		return images.Image{}, false, fmt.Errorf("update image record %s: %w", img.Name, err)
	}
	return updated, false, nil
}
