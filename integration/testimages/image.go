package testimages

import (
	_ "crypto/sha256" // registers the digest algorithm go-digest uses
	"encoding/json"
	"fmt"
	"maps"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageSpec describes one single-platform image for [BuildImage].
type ImageSpec struct {
	// Name is the full reference the writers record, e.g.
	// "docker.io/library/busybox:latest". Optional.
	Name        string
	Layers      []Layer
	Compression Compression // of every layer; zero means Gzip
	Config      ocispec.ImageConfig
	// History defaults to one entry per layer. When set, its non-empty
	// entries must match the layers one to one.
	History  []ocispec.History
	Platform ocispec.Platform // zero means the host's (platforms.DefaultSpec)
	// Annotations go on the manifest.
	Annotations map[string]string
}

// Image is a built image: Target is its manifest or index, Blobs holds every
// blob reachable from it (manifests, configs, layers) by digest. Callers must
// not modify the blobs.
type Image struct {
	Name   string
	Target ocispec.Descriptor
	Blobs  map[digest.Digest][]byte
}

// BuildImage builds the config, layer blobs and manifest of spec. The
// manifest descriptor in Target carries the platform.
func BuildImage(spec ImageSpec) (*Image, error) {
	platform := spec.Platform
	if platform.OS == "" {
		platform = platforms.DefaultSpec()
	}
	history, err := imageHistory(spec)
	if err != nil {
		return nil, err
	}
	img := &Image{Name: spec.Name, Blobs: map[digest.Digest][]byte{}}
	manifest := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Annotations: spec.Annotations,
	}
	created := Epoch
	config := ocispec.Image{
		Created:  &created,
		Platform: platform,
		Config:   spec.Config,
		RootFS:   ocispec.RootFS{Type: "layers"},
		History:  history,
	}
	for i, l := range spec.Layers {
		desc, data, err := l.Compress(spec.Compression)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		img.Blobs[desc.Digest] = data
		manifest.Layers = append(manifest.Layers, desc)
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, l.DiffID)
	}
	if manifest.Config, err = img.addJSON(ocispec.MediaTypeImageConfig, config); err != nil {
		return nil, err
	}
	if img.Target, err = img.addJSON(ocispec.MediaTypeImageManifest, manifest); err != nil {
		return nil, err
	}
	img.Target.Platform = &platform
	return img, nil
}

func imageHistory(spec ImageSpec) ([]ocispec.History, error) {
	if spec.History == nil {
		history := make([]ocispec.History, len(spec.Layers))
		for i := range history {
			history[i] = ocispec.History{Created: &Epoch, CreatedBy: fmt.Sprintf("testimages layer %d", i)}
		}
		return history, nil
	}
	nonEmpty := 0
	for _, h := range spec.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty != len(spec.Layers) {
		return nil, fmt.Errorf("history has %d non-empty entries for %d layers: %w", nonEmpty, len(spec.Layers), errdefs.ErrInvalidArgument)
	}
	return spec.History, nil
}

// BuildIndex builds an image index over images (each a single manifest
// built by [BuildImage], or an index for nesting) and merges their blobs.
func BuildIndex(name string, images []*Image, annotations map[string]string) (*Image, error) {
	idx := &Image{Name: name, Blobs: map[digest.Digest][]byte{}}
	index := ocispec.Index{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageIndex,
		Annotations: annotations,
	}
	for _, img := range images {
		maps.Copy(idx.Blobs, img.Blobs)
		index.Manifests = append(index.Manifests, img.Target)
	}
	var err error
	idx.Target, err = idx.addJSON(ocispec.MediaTypeImageIndex, index)
	return idx, err
}

func (img *Image) addJSON(mediaType string, v any) (ocispec.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode %s: %w", mediaType, err)
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	img.Blobs[desc.Digest] = data
	return desc, nil
}

// WithName returns a copy of img recorded under another reference; the
// blobs are shared.
func (img *Image) WithName(name string) *Image {
	c := *img
	c.Name = name
	return &c
}

// Walk calls fn once for every blob of img, children before the manifest or
// index that refers to them, in a fixed order: the order a registry push
// needs.
func (img *Image) Walk(fn func(desc ocispec.Descriptor, data []byte) error) error {
	seen := map[digest.Digest]bool{}
	return img.walk(img.Target, seen, fn)
}

func (img *Image) walk(desc ocispec.Descriptor, seen map[digest.Digest]bool, fn func(ocispec.Descriptor, []byte) error) error {
	if seen[desc.Digest] {
		return nil
	}
	seen[desc.Digest] = true
	data, ok := img.Blobs[desc.Digest]
	if !ok {
		return fmt.Errorf("blob %s (%s): %w", desc.Digest, desc.MediaType, errdefs.ErrNotFound)
	}
	children, err := Children(desc, data)
	if err != nil {
		return err
	}
	for _, child := range children {
		if err := img.walk(child, seen, fn); err != nil {
			return err
		}
	}
	return fn(desc, data)
}

// Children lists the descriptors a manifest or index blob refers to; other
// blobs have none.
func Children(desc ocispec.Descriptor, data []byte) ([]ocispec.Descriptor, error) {
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, mediaTypeDockerList:
		var index ocispec.Index
		if err := json.Unmarshal(data, &index); err != nil {
			return nil, fmt.Errorf("decode index %s: %w", desc.Digest, err)
		}
		return index.Manifests, nil
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("decode manifest %s: %w", desc.Digest, err)
		}
		return append([]ocispec.Descriptor{m.Config}, m.Layers...), nil
	}
	return nil, nil
}

// Docker media types that valid archives may carry.
const (
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerGzip     = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Resolved is one platform's manifest of an image, decoded.
type Resolved struct {
	Descriptor ocispec.Descriptor // of the manifest
	Manifest   ocispec.Manifest
	Config     ocispec.Image
}

// Resolve finds the manifest for platform ("linux/arm64"; "" means the
// host's), descending through nested indexes. A single-manifest image
// resolves for any platform its config names.
func (img *Image) Resolve(platform string) (Resolved, error) {
	want := platforms.DefaultSpec()
	if platform != "" {
		p, err := platforms.Parse(platform)
		if err != nil {
			return Resolved{}, fmt.Errorf("platform %q: %w", platform, errdefs.ErrInvalidArgument)
		}
		want = p
	}
	return img.resolve(img.Target, platforms.Only(want), platform)
}

func (img *Image) resolve(desc ocispec.Descriptor, match platforms.Matcher, platform string) (Resolved, error) {
	data, ok := img.Blobs[desc.Digest]
	if !ok {
		return Resolved{}, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	children, err := Children(desc, data)
	if err != nil {
		return Resolved{}, err
	}
	if desc.MediaType == ocispec.MediaTypeImageIndex || desc.MediaType == mediaTypeDockerList {
		for _, child := range children {
			if child.Platform != nil && !match.Match(*child.Platform) {
				continue
			}
			if r, err := img.resolve(child, match, platform); err == nil {
				return r, nil
			}
		}
		return Resolved{}, fmt.Errorf("index %s has no manifest for platform %q: %w", desc.Digest, platform, errdefs.ErrNotFound)
	}
	r := Resolved{Descriptor: desc}
	if err := json.Unmarshal(data, &r.Manifest); err != nil {
		return Resolved{}, fmt.Errorf("decode manifest %s: %w", desc.Digest, err)
	}
	if err := json.Unmarshal(img.Blobs[r.Manifest.Config.Digest], &r.Config); err != nil {
		return Resolved{}, fmt.Errorf("decode config %s: %w", r.Manifest.Config.Digest, err)
	}
	if !match.Match(r.Config.Platform) {
		return Resolved{}, fmt.Errorf("manifest %s is for %s, not %q: %w", desc.Digest, platforms.Format(r.Config.Platform), platform, errdefs.ErrNotFound)
	}
	return r, nil
}

// LayerTars returns the uncompressed layer tarballs of platform's manifest
// (see [Image.Resolve]), bottom layer first.
func (img *Image) LayerTars(platform string) ([][]byte, error) {
	r, err := img.Resolve(platform)
	if err != nil {
		return nil, err
	}
	tars := make([][]byte, len(r.Manifest.Layers))
	for i, l := range r.Manifest.Layers {
		if tars[i], err = Decompress(img.Blobs[l.Digest]); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
	}
	return tars, nil
}
