package images

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
)

// maxIndexDepth bounds how deeply indexes may nest, so a crafted chain of
// indexes cannot recurse without end.
const maxIndexDepth = 16

// ResolvedManifest is the manifest an image has for a platform.
type ResolvedManifest struct {
	// Indexes are the indexes passed on the way from the image's target to
	// the manifest, outermost first; empty when the target is the manifest.
	Indexes []ocispec.Descriptor
	// Descriptor is the manifest's descriptor, its Platform filled in from
	// the config when the parent index did not name one.
	Descriptor ocispec.Descriptor
	Manifest   ocispec.Manifest
}

// ResolveManifest finds the manifest of target (an index, possibly
// nested, or a manifest) that best matches platform: among an index's
// children the matching ones are tried best first (those without a
// platform last), descending into nested indexes and falling back to the
// next candidate when one holds no match. A manifest whose descriptor
// names no platform is judged by its config. No match is ErrNoMatch and
// errdefs.ErrNotFound; content missing on the way is errdefs.ErrNotFound
// alone.
func ResolveManifest(ctx context.Context, provider content.Provider, target ocispec.Descriptor, platform platforms.MatchComparer) (ResolvedManifest, error) {
	r, err := resolve(ctx, provider, target, platform, nil)
	if errors.Is(err, ErrNoMatch) {
		return ResolvedManifest{}, fmt.Errorf("image %s: %w: %w", target.Digest, err, errdefs.ErrNotFound)
	}
	return r, err
}

func resolve(ctx context.Context, provider content.Provider, desc ocispec.Descriptor, mc platforms.MatchComparer, parents []ocispec.Descriptor) (ResolvedManifest, error) {
	switch {
	case IsManifestType(desc.MediaType):
		return resolveManifest(ctx, provider, desc, mc, parents)
	case IsIndexType(desc.MediaType):
		return resolveIndex(ctx, provider, desc, mc, parents)
	case IsSchema1Type(desc.MediaType):
		return ResolvedManifest{}, fmt.Errorf("%s is a Docker schema 1 manifest: %w", desc.Digest, errdefs.ErrNotImplemented)
	}
	return ResolvedManifest{}, fmt.Errorf("%s has media type %q, which is neither an index nor a manifest: %w",
		desc.Digest, desc.MediaType, errdefs.ErrInvalidArgument)
}

func resolveManifest(ctx context.Context, provider content.Provider, desc ocispec.Descriptor, mc platforms.MatchComparer, parents []ocispec.Descriptor) (ResolvedManifest, error) {
	m, err := ReadManifest(ctx, provider, desc)
	if err != nil {
		return ResolvedManifest{}, err
	}
	p := desc.Platform
	if p == nil {
		if p, err = configPlatform(ctx, provider, m.Config); err != nil {
			return ResolvedManifest{}, err
		}
	}
	if p == nil {
		return ResolvedManifest{}, noMatch("manifest %s names no platform", desc.Digest)
	}
	if !mc.Match(*p) {
		return ResolvedManifest{}, noMatch("manifest %s is for %s", desc.Digest, platforms.FormatAll(*p))
	}
	desc.Platform = p
	return ResolvedManifest{Indexes: parents, Descriptor: desc, Manifest: m}, nil
}

func resolveIndex(ctx context.Context, provider content.Provider, desc ocispec.Descriptor, mc platforms.MatchComparer, parents []ocispec.Descriptor) (ResolvedManifest, error) {
	if len(parents) >= maxIndexDepth {
		return ResolvedManifest{}, invalid(desc, "indexes nest more than %d deep", maxIndexDepth)
	}
	idx, err := ReadIndex(ctx, provider, desc)
	if err != nil {
		return ResolvedManifest{}, err
	}
	path := append(slices.Clip(parents), desc)
	for _, child := range rank(matching(idx.Manifests, mc), mc) {
		if !IsManifestType(child.MediaType) && !IsIndexType(child.MediaType) {
			continue // attestations, signatures and other artifacts
		}
		r, err := resolve(ctx, provider, child, mc, path)
		if !errors.Is(err, ErrNoMatch) {
			return r, err
		}
	}
	return ResolvedManifest{}, noMatch("index %s has no manifest for the platform", desc.Digest)
}

// configPlatform reads the platform an image config names; nil when the
// config is not an image config or names no OS.
func configPlatform(ctx context.Context, provider content.Provider, desc ocispec.Descriptor) (*ocispec.Platform, error) {
	if !IsConfigType(desc.MediaType) {
		return nil, nil
	}
	img, err := ReadConfig(ctx, provider, desc)
	if err != nil {
		return nil, err
	}
	if img.OS == "" {
		return nil, nil
	}
	p := platforms.Normalize(img.Platform)
	return &p, nil
}

// Manifest returns target's manifest for platform (see ResolveManifest).
func Manifest(ctx context.Context, provider content.Provider, target ocispec.Descriptor, platform platforms.MatchComparer) (ocispec.Manifest, error) {
	r, err := ResolveManifest(ctx, provider, target, platform)
	return r.Manifest, err
}

// Config returns the config descriptor of target's manifest for platform.
func Config(ctx context.Context, provider content.Provider, target ocispec.Descriptor, platform platforms.MatchComparer) (ocispec.Descriptor, error) {
	r, err := ResolveManifest(ctx, provider, target, platform)
	return r.Manifest.Config, err
}

// Size is the bytes of content target needs for platform: the indexes on
// the way, the manifest, its config and each distinct layer.
func Size(ctx context.Context, provider content.Provider, target ocispec.Descriptor, platform platforms.MatchComparer) (int64, error) {
	r, err := ResolveManifest(ctx, provider, target, platform)
	if err != nil {
		return 0, err
	}
	var size int64
	seen := map[digest.Digest]bool{}
	for _, d := range r.Blobs() {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			size += d.Size
		}
	}
	return size, nil
}

// Blobs lists every descriptor the resolved image consists of: indexes,
// manifest, config and layers, in that order.
func (r ResolvedManifest) Blobs() []ocispec.Descriptor {
	out := slices.Clone(r.Indexes)
	out = append(out, r.Descriptor, r.Manifest.Config)
	return append(out, r.Manifest.Layers...)
}

// Platforms lists the platforms target has manifests for, in the order
// found: those named by index entries, and for manifests without one the
// platform of their config. Entries for "unknown" platforms (BuildKit's
// attestation manifests) are left out, as are duplicates. Manifests of
// platforms named in an index need not be present.
func Platforms(ctx context.Context, provider content.Provider, target ocispec.Descriptor) ([]ocispec.Platform, error) {
	var out []ocispec.Platform
	seen := map[string]bool{}
	add := func(p ocispec.Platform) {
		p = platforms.Normalize(p)
		if key := platforms.FormatAll(p); !seen[key] {
			seen[key] = true
			out = append(out, p)
		}
	}
	depth := map[digest.Digest]int{}
	handler := HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		switch {
		case desc.Platform != nil:
			if desc.Platform.OS != "unknown" && desc.Platform.Architecture != "unknown" {
				add(*desc.Platform)
			}
			return nil, ErrSkipDesc
		case IsIndexType(desc.MediaType):
			if depth[desc.Digest] >= maxIndexDepth {
				return nil, invalid(desc, "indexes nest more than %d deep", maxIndexDepth)
			}
			idx, err := ReadIndex(ctx, provider, desc)
			if err != nil {
				return nil, err
			}
			for _, c := range idx.Manifests {
				depth[c.Digest] = depth[desc.Digest] + 1
			}
			return idx.Manifests, nil
		case IsManifestType(desc.MediaType):
			m, err := ReadManifest(ctx, provider, desc)
			if err != nil {
				return nil, err
			}
			p, err := configPlatform(ctx, provider, m.Config)
			if err != nil {
				return nil, err
			}
			if p != nil {
				add(*p)
			}
		}
		return nil, nil
	})
	return out, Walk(ctx, handler, target)
}
