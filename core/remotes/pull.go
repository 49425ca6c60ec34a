package remotes

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/reference"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Garbage-collection labels a pull sets on manifests and indexes so their
// children stay reachable from the image record.
const (
	labelGCRefContent = "containerd.io/gc.ref.content."
	maxIndexDepth     = 4
)

// Store is what a pull writes blobs into and reads manifests back from.
type Store interface {
	content.Ingester
	content.Provider
}

// LayerHook is called for each layer of each fetched manifest as soon as
// the layer blob is in the store, while other layers may still be
// downloading; calls run concurrently and in no fixed order, but always
// after the manifest's config is in the store. An error fails the pull.
type LayerHook func(ctx context.Context, manifest ocispec.Descriptor, index int, layer ocispec.Descriptor) error

// FetchOptions control a pull.
type FetchOptions struct {
	// Platforms selects the manifest of a multi-platform index: the best
	// match is pulled. Nil means the host's platform (platforms.Default).
	Platforms platforms.MatchComparer
	// AllPlatforms pulls every manifest of an index.
	AllPlatforms bool
	// Progress is told the bytes held of every blob as they arrive.
	Progress ProgressFunc
	// LayerHook, when set, is called as each layer lands.
	LayerHook LayerHook
	// ManifestHook, when set, is told each image manifest once it is in
	// the store, before its config and layers are fetched (a progress
	// display lists the layers to come).
	ManifestHook func(ctx context.Context, desc ocispec.Descriptor, m ocispec.Manifest)
}

// Manifest is one image manifest a pull fetched.
type Manifest struct {
	// Descriptor is as the index lists it (with its platform), or the root
	// descriptor for a single-manifest image.
	Descriptor ocispec.Descriptor
	Manifest   ocispec.Manifest
}

// Image is the result of a pull.
type Image struct {
	// Name is the normalised reference pulled.
	Name reference.Reference
	// Target is the root descriptor the reference resolved to.
	Target ocispec.Descriptor
	// Manifests are the pulled manifests in index order.
	Manifests []Manifest
}

// Fetch pulls ref into store: resolve, then index → platform manifest(s) →
// config and layers, fetched concurrently within the Resolver's bound,
// calling opts.LayerHook as each layer lands. Blobs already in the store
// are not fetched again.
func (r *Resolver) Fetch(ctx context.Context, ref string, store Store, opts FetchOptions) (*Image, error) {
	name, root, err := r.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	f, err := r.Fetcher(name.String())
	if err != nil {
		return nil, err
	}
	p := &puller{f: f, store: store, opts: opts}
	if p.opts.Platforms == nil {
		p.opts.Platforms = platforms.Default()
	}
	manifests, err := p.walk(ctx, root, 0)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", name, err)
	}
	return &Image{Name: name, Target: root, Manifests: manifests}, nil
}

type puller struct {
	f     *Fetcher
	store Store
	opts  FetchOptions
}

func (p *puller) walk(ctx context.Context, desc ocispec.Descriptor, depth int) ([]Manifest, error) {
	switch {
	case isIndex(desc.MediaType):
		if depth >= maxIndexDepth {
			return nil, errInvalid("index %s: nested more than %d deep", desc.Digest, maxIndexDepth)
		}
		return p.walkIndex(ctx, desc, depth)
	case isManifest(desc.MediaType):
		m, err := p.pullManifest(ctx, desc)
		if err != nil {
			return nil, err
		}
		return []Manifest{m}, nil
	}
	return nil, checkRoot(desc)
}

func (p *puller) walkIndex(ctx context.Context, desc ocispec.Descriptor, depth int) ([]Manifest, error) {
	var children []ocispec.Descriptor
	_, err := p.load(ctx, desc, func(data []byte) (map[string]string, error) {
		idx, err := parseIndex(desc, data)
		if err != nil {
			return nil, err
		}
		if children, err = p.selectChildren(desc, idx); err != nil {
			return nil, err
		}
		labels := map[string]string{}
		for i, c := range children {
			labels[labelGCRefContent+"m."+strconv.Itoa(i)] = c.Digest.String()
		}
		return labels, nil
	})
	if err != nil {
		return nil, err
	}
	results := make([][]Manifest, len(children))
	g, gctx := errgroup.WithContext(ctx)
	for i, c := range children {
		g.Go(func() error {
			m, err := p.walk(gctx, c, depth+1)
			results[i] = m
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []Manifest
	for _, r := range results {
		out = append(out, r...)
	}
	return out, nil
}

// selectChildren picks the manifests of an index to pull: all of them, or
// the best match for the platform; an index without a platform is
// descended into when no manifest matches.
func (p *puller) selectChildren(desc ocispec.Descriptor, idx ocispec.Index) ([]ocispec.Descriptor, error) {
	if p.opts.AllPlatforms {
		var all []ocispec.Descriptor
		for _, c := range idx.Manifests {
			if isManifest(c.MediaType) || isIndex(c.MediaType) {
				all = append(all, c)
			}
		}
		if len(all) == 0 {
			return nil, fmt.Errorf("index %s lists no image manifests: %w", desc.Digest, errdefs.ErrNotFound)
		}
		return all, nil
	}
	var matches, nested []ocispec.Descriptor
	for _, c := range idx.Manifests {
		switch {
		case c.Platform != nil && isManifest(c.MediaType) && p.opts.Platforms.Match(*c.Platform):
			matches = append(matches, c)
		case c.Platform == nil && isIndex(c.MediaType):
			nested = append(nested, c)
		}
	}
	if len(matches) > 0 {
		sort.SliceStable(matches, func(i, j int) bool {
			return p.opts.Platforms.Less(*matches[i].Platform, *matches[j].Platform)
		})
		return matches[:1], nil
	}
	if len(nested) > 0 {
		return nested[:1], nil
	}
	var have []string
	for _, c := range idx.Manifests {
		if c.Platform != nil {
			have = append(have, platforms.Format(*c.Platform))
		}
	}
	return nil, fmt.Errorf("index %s has no manifest for the requested platform (it has %v): %w", desc.Digest, have, errdefs.ErrNotFound)
}

// pullManifest loads a manifest, then fetches its config and layers.
func (p *puller) pullManifest(ctx context.Context, desc ocispec.Descriptor) (Manifest, error) {
	var m ocispec.Manifest
	_, err := p.load(ctx, desc, func(data []byte) (map[string]string, error) {
		var err error
		if m, err = parseManifest(desc, data); err != nil {
			return nil, err
		}
		labels := map[string]string{labelGCRefContent + "config": m.Config.Digest.String()}
		for i, l := range m.Layers {
			labels[labelGCRefContent+"l."+strconv.Itoa(i)] = l.Digest.String()
		}
		return labels, nil
	})
	if err != nil {
		return Manifest{}, err
	}
	if p.opts.ManifestHook != nil {
		p.opts.ManifestHook(ctx, desc, m)
	}
	if err := p.fetchBlobs(ctx, desc, m); err != nil {
		return Manifest{}, err
	}
	return Manifest{Descriptor: desc, Manifest: m}, nil
}

// fetchBlobs ingests config and layers concurrently. Downloads take their
// slots in manifest order (config, then layers bottom up), so that under
// the concurrency bound the layer an unpacker needs first arrives first.
// Layer hooks wait for the config, which an unpacker needs to check layers
// against.
func (p *puller) fetchBlobs(ctx context.Context, desc ocispec.Descriptor, m ocispec.Manifest) error {
	g, gctx := errgroup.WithContext(ctx)
	configDone := make(chan struct{})
	// turn is closed when the previous blob has started: each blob waits
	// for it before asking for a slot.
	turn := make(chan struct{})
	close(turn)
	ingest := func(d ocispec.Descriptor, prev <-chan struct{}, started chan struct{}) error {
		select {
		case <-prev:
		case <-gctx.Done():
			return gctx.Err()
		}
		return p.f.Ingest(gctx, p.store, d, IngestOptions{Progress: p.opts.Progress, Started: func() { close(started) }})
	}
	next := func() (<-chan struct{}, chan struct{}) {
		prev, started := turn, make(chan struct{})
		turn = started
		return prev, started
	}
	prev, started := next()
	g.Go(func() error {
		if err := ingest(m.Config, prev, started); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		close(configDone)
		return nil
	})
	for i, layer := range m.Layers {
		if isNonDistributable(layer.MediaType) {
			continue
		}
		prev, started := next()
		g.Go(func() error {
			if err := ingest(layer, prev, started); err != nil {
				return fmt.Errorf("layer %d: %w", i, err)
			}
			if p.opts.LayerHook == nil {
				return nil
			}
			select {
			case <-configDone:
			case <-gctx.Done():
				return gctx.Err()
			}
			if err := p.opts.LayerHook(gctx, desc, i, layer); err != nil {
				return fmt.Errorf("layer %d (%s): %w", i, layer.Digest, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	return nil
}

// load returns a manifest or index's bytes, from the store when present,
// else fetched, verified and stored with the labels labelsFor gives (it is
// also where the caller parses). Concurrent loads of one digest in this
// process fetch it once.
func (p *puller) load(ctx context.Context, desc ocispec.Descriptor, labelsFor func([]byte) (map[string]string, error)) ([]byte, error) {
	if err := checkManifestSize(desc); err != nil {
		return nil, err
	}
	var data []byte
	ran, err := collapse(ctx, desc.Digest, func() error {
		var err error
		data, err = p.loadOnce(ctx, desc, labelsFor)
		return err
	})
	if ran || err != nil {
		return data, err
	}
	return p.loadOnce(ctx, desc, labelsFor)
}

func (p *puller) loadOnce(ctx context.Context, desc ocispec.Descriptor, labelsFor func([]byte) (map[string]string, error)) ([]byte, error) {
	data, err := readStored(ctx, p.store, desc)
	if err == nil {
		return data, p.stored(ctx, desc, data, labelsFor)
	}
	if !errdefs.IsNotFound(err) {
		return nil, err
	}
	if data, err = p.f.readManifest(ctx, desc); err != nil {
		return nil, err
	}
	labels, err := labelsFor(data)
	if err != nil {
		return nil, err
	}
	labels[LabelDistributionSource+p.f.name.Domain] = p.f.name.Path
	existed, err := writeBytes(ctx, p.store, desc, data, labels)
	if err != nil {
		return nil, err
	}
	if existed {
		// Another namespace (or a racing writer) had stored the bytes:
		// the commit labels were not applied, so set them now.
		return data, p.stored(ctx, desc, data, labelsFor)
	}
	p.opts.Progress.report(desc, desc.Size)
	return data, nil
}

// stored handles a manifest or index the store already holds: its
// garbage-collection labels are made to name the children this pull
// selected (the blob may have been stored without them, by a client or
// in another namespace, or labelled for other platforms), and this
// repository is added to its distribution sources.
func (p *puller) stored(ctx context.Context, desc ocispec.Descriptor, data []byte, labelsFor func([]byte) (map[string]string, error)) error {
	labels, err := labelsFor(data)
	if err != nil {
		return err
	}
	if m, ok := p.store.(content.Manager); ok {
		if err := ensureLabels(ctx, m, desc, labels); err != nil {
			return err
		}
	}
	p.f.addSource(ctx, p.store, desc)
	p.opts.Progress.report(desc, desc.Size)
	return nil
}

// ensureLabels sets the labels a blob lacks or holds with other values,
// leaving its other labels alone; a blob that has them all is not written.
func ensureLabels(ctx context.Context, m content.Manager, desc ocispec.Descriptor, labels map[string]string) error {
	info, err := m.Info(ctx, desc.Digest)
	if err != nil {
		return fmt.Errorf("label %s: %w", desc.Digest, err)
	}
	upd := content.Info{Digest: desc.Digest, Labels: map[string]string{}}
	var fields []string
	for k, v := range labels {
		if info.Labels[k] != v {
			upd.Labels[k] = v
			fields = append(fields, "labels."+k)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	if _, err := m.Update(ctx, upd, fields...); err != nil {
		return fmt.Errorf("label %s with its children: %w", desc.Digest, err)
	}
	return nil
}

// readStored reads a manifest or index from the store and verifies it.
func readStored(ctx context.Context, store content.Provider, desc ocispec.Descriptor) ([]byte, error) {
	return content.ReadBlob(ctx, store, desc, MaxManifestSize)
}

func parseIndex(desc ocispec.Descriptor, data []byte) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return idx, errInvalid("index %s: %v", desc.Digest, err)
	}
	for i, c := range idx.Manifests {
		if err := validateDescriptor(c); err != nil {
			return idx, fmt.Errorf("index %s: manifests[%d]: %w", desc.Digest, i, err)
		}
		if (isManifest(c.MediaType) || isIndex(c.MediaType)) && c.Size > MaxManifestSize {
			return idx, fmt.Errorf("index %s: manifests[%d]: %w", desc.Digest, i, checkManifestSize(c))
		}
	}
	return idx, nil
}

func parseManifest(desc ocispec.Descriptor, data []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return m, errInvalid("manifest %s: %v", desc.Digest, err)
	}
	if err := validateDescriptor(m.Config); err != nil {
		return m, fmt.Errorf("manifest %s: config: %w", desc.Digest, err)
	}
	for i, l := range m.Layers {
		if err := validateDescriptor(l); err != nil {
			return m, fmt.Errorf("manifest %s: layers[%d]: %w", desc.Digest, i, err)
		}
	}
	return m, nil
}
