package archive

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/images"
)

// maxDepth bounds nested indexes when every platform is imported.
const maxDepth = 16

// planner decides which content of each root is kept, checks that all of
// it is in the store, and collects the GC labels that will keep it.
type planner struct {
	cs       content.Store
	platform platforms.MatchComparer // nil: every platform
	done     map[digest.Digest]bool
	parents  []parentLabels
}

type parentLabels struct {
	parent   ocispec.Descriptor
	children []ocispec.Descriptor
}

func newPlanner(cs content.Store, platform platforms.MatchComparer) *planner {
	return &planner{cs: cs, platform: platform, done: map[digest.Digest]bool{}}
}

func (p *planner) label(parent ocispec.Descriptor, children []ocispec.Descriptor) {
	p.parents = append(p.parents, parentLabels{parent, children})
}

// root plans one image. With a platform, an index keeps only its best
// match (through nested indexes) as a pull would, and a manifest root is
// kept whatever its platform, as `docker load` does.
func (p *planner) root(ctx context.Context, r root) error {
	desc := r.desc
	switch {
	case r.index:
		p.label(desc, r.children)
		return nil
	case images.IsSchema1Type(desc.MediaType):
		return fmt.Errorf("image %s: Docker schema 1 manifests are not supported: %w", rootName(r), errdefs.ErrNotImplemented)
	case !images.IsIndexType(desc.MediaType) && !images.IsManifestType(desc.MediaType):
		return badArchive("image %s has unknown media type %q", rootName(r), desc.MediaType)
	case p.platform == nil:
		return p.all(ctx, desc, 0)
	case images.IsManifestType(desc.MediaType):
		return p.manifest(ctx, desc)
	}
	res, err := images.ResolveManifest(ctx, p.cs, desc, p.platform)
	if errors.Is(err, images.ErrNoMatch) {
		return fmt.Errorf("image %s has no manifest for the platform %s: %w", rootName(r), platforms.DefaultString(), err)
	}
	if err != nil {
		return rootError(err, rootName(r))
	}
	path := append(res.Indexes, res.Descriptor)
	for i, idx := range res.Indexes {
		if !p.done[idx.Digest] {
			p.done[idx.Digest] = true
			p.label(idx, path[i+1:i+2])
		}
	}
	return p.manifest(ctx, res.Descriptor)
}

func rootName(r root) string {
	if len(r.names) > 0 {
		return r.names[0]
	}
	return r.desc.Digest.String()
}

// all keeps everything below desc: every child of every index.
func (p *planner) all(ctx context.Context, desc ocispec.Descriptor, depth int) error {
	if !images.IsIndexType(desc.MediaType) {
		return p.manifest(ctx, desc)
	}
	if p.done[desc.Digest] {
		return nil
	}
	p.done[desc.Digest] = true
	if depth >= maxDepth {
		return badArchive("index %s: indexes nest more than %d deep", desc.Digest, maxDepth)
	}
	idx, err := images.ReadIndex(ctx, p.cs, desc)
	if err != nil {
		return contentError(err, "index", desc)
	}
	var kept []ocispec.Descriptor
	for _, child := range idx.Manifests {
		switch {
		case images.IsIndexType(child.MediaType), images.IsManifestType(child.MediaType):
			if err := p.all(ctx, child, depth+1); err != nil {
				return err
			}
		default:
			// Artifacts of types berth does not know are kept when the
			// archive has them, but not required.
			if ok, err := p.present(ctx, child, "entry of index "+desc.Digest.String()); err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
		}
		kept = append(kept, child)
	}
	p.label(desc, kept)
	return nil
}

// manifest keeps a manifest, its config and its layers; only
// non-distributable layers may be missing.
func (p *planner) manifest(ctx context.Context, desc ocispec.Descriptor) error {
	if p.done[desc.Digest] {
		return nil
	}
	p.done[desc.Digest] = true
	m, err := images.ReadManifest(ctx, p.cs, desc)
	if err != nil {
		return contentError(err, "manifest", desc)
	}
	what := "config of manifest " + desc.Digest.String()
	if ok, err := p.present(ctx, m.Config, what); err != nil || !ok {
		return missing(err, m.Config, what)
	}
	kept := []ocispec.Descriptor{m.Config}
	// Only images are unpacked, so only an image's layers must be of a
	// kind berth can apply; artifacts (attestations, signatures) keep
	// whatever their layers are.
	isImage := images.IsConfigType(m.Config.MediaType)
	for i, l := range m.Layers {
		what := fmt.Sprintf("layer %d of manifest %s", i, desc.Digest)
		if isImage && !images.IsLayerType(l.MediaType) {
			return badArchive("%s has unknown media type %q", what, l.MediaType)
		}
		ok, err := p.present(ctx, l, what)
		if err != nil {
			return err
		}
		if !ok {
			if images.IsNonDistributable(l.MediaType) {
				continue
			}
			return missing(nil, l, what)
		}
		kept = append(kept, l)
	}
	p.label(desc, kept)
	return nil
}

func missing(err error, desc ocispec.Descriptor, what string) error {
	if err != nil {
		return err
	}
	return badArchive("%s (%s) is not in the archive", what, desc.Digest)
}

// present reports whether desc is stored with the size its parent says.
func (p *planner) present(ctx context.Context, desc ocispec.Descriptor, what string) (bool, error) {
	info, err := p.cs.Info(ctx, desc.Digest)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", what, desc.Digest, err)
	}
	if info.Size != desc.Size {
		return false, badArchive("%s %s is %d bytes, but its descriptor says %d", what, desc.Digest, info.Size, desc.Size)
	}
	return true, nil
}

// apply sets the collected GC labels.
func (p *planner) apply(ctx context.Context) error {
	for _, pl := range p.parents {
		if err := images.SetChildGCLabels(ctx, p.cs, pl.parent, pl.children); err != nil {
			return err
		}
	}
	return nil
}
