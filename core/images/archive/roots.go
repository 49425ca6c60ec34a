package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/images"
)

// root is one image the archive holds: the descriptor an image record
// will point at, and the names it gets.
type root struct {
	desc  ocispec.Descriptor
	names []string
	// index marks the archive's own index, kept under IndexName: all of
	// its entries are roots of their own, so it refers to each of them.
	index    bool
	children []ocispec.Descriptor
}

// roots interprets the archive: as an OCI layout when it has index.json
// (Docker 25 and later write both index.json and manifest.json), else as a
// `docker save` archive.
func (imp *importer) roots(ctx context.Context, f *files) ([]root, error) {
	var (
		roots []root
		index ocispec.Index
		err   error
	)
	switch {
	case f.meta[ocispec.ImageIndexFile] != nil:
		roots, index, err = imp.ociRoots(f)
	case f.meta[dockerManifestFile] != nil:
		roots, index, err = imp.dockerRoots(ctx, f)
	case f.meta[ocispec.ImageLayoutFile] != nil:
		return nil, badArchive("it has %s but no %s", ocispec.ImageLayoutFile, ocispec.ImageIndexFile)
	default:
		return nil, badArchive("it has neither %s nor %s", ocispec.ImageIndexFile, dockerManifestFile)
	}
	if err != nil {
		return nil, err
	}
	imp.addDigestNames(roots)
	if imp.opts.IndexName != "" {
		r, err := imp.indexRoot(ctx, f, index)
		if err != nil {
			return nil, err
		}
		roots = append(roots, r)
	}
	return roots, nil
}

func (imp *importer) ociRoots(f *files) ([]root, ocispec.Index, error) {
	if data := f.meta[ocispec.ImageLayoutFile]; data != nil {
		var layout ocispec.ImageLayout
		if err := json.Unmarshal(data, &layout); err != nil {
			return nil, ocispec.Index{}, badArchive("%s: invalid JSON: %v", ocispec.ImageLayoutFile, err)
		}
		if layout.Version != ocispec.ImageLayoutVersion {
			return nil, ocispec.Index{}, badArchive("%s: unsupported layout version %q (want %s)",
				ocispec.ImageLayoutFile, layout.Version, ocispec.ImageLayoutVersion)
		}
	}
	data := f.meta[ocispec.ImageIndexFile]
	index, err := images.DecodeIndex(indexDescriptor(data), data)
	if err != nil {
		return nil, ocispec.Index{}, badArchive("%s: %v", ocispec.ImageIndexFile, err)
	}
	if len(index.Manifests) == 0 {
		return nil, ocispec.Index{}, badArchive("%s lists no images", ocispec.ImageIndexFile)
	}
	roots := make([]root, 0, len(index.Manifests))
	for _, desc := range index.Manifests {
		names, err := ociNames(desc, imp.base)
		if err != nil {
			return nil, ocispec.Index{}, err
		}
		roots = append(roots, root{desc: desc, names: names})
	}
	return roots, index, nil
}

func indexDescriptor(data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// dockerEntry is one image of a `docker save` manifest.json.
type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// dockerRoots builds a Docker schema 2 manifest for each manifest.json
// entry over its config and layer files, as containerd does, and returns
// the index listing them.
func (imp *importer) dockerRoots(ctx context.Context, f *files) ([]root, ocispec.Index, error) {
	var entries []dockerEntry
	if err := json.Unmarshal(f.meta[dockerManifestFile], &entries); err != nil {
		return nil, ocispec.Index{}, badArchive("%s: invalid JSON: %v", dockerManifestFile, err)
	}
	if len(entries) == 0 {
		return nil, ocispec.Index{}, badArchive("%s lists no images", dockerManifestFile)
	}
	repos, err := repositories(f)
	if err != nil {
		return nil, ocispec.Index{}, err
	}
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	var roots []root
	for i, e := range entries {
		desc, err := imp.dockerManifest(ctx, f, i, e)
		if err != nil {
			return nil, ocispec.Index{}, err
		}
		names, err := dockerNames(e.RepoTags, i)
		if err != nil {
			return nil, ocispec.Index{}, err
		}
		if len(names) == 0 && len(e.Layers) > 0 {
			if names, err = repos.names(path.Dir(path.Clean(e.Layers[len(e.Layers)-1])), i); err != nil {
				return nil, ocispec.Index{}, err
			}
		}
		roots = append(roots, root{desc: desc, names: names})
		index.Manifests = append(index.Manifests, withNameAnnotations(desc, names)...)
	}
	return roots, index, nil
}

// withNameAnnotations returns one copy of desc per name, annotated with it
// the way export writes index.json; desc itself when there are no names.
func withNameAnnotations(desc ocispec.Descriptor, names []string) []ocispec.Descriptor {
	if len(names) == 0 {
		return []ocispec.Descriptor{desc}
	}
	out := make([]ocispec.Descriptor, 0, len(names))
	for _, n := range names {
		d := desc
		d.Annotations = map[string]string{images.AnnotationImageName: n, ocispec.AnnotationRefName: ociRefName(n)}
		out = append(out, d)
	}
	return out
}

func (imp *importer) dockerManifest(ctx context.Context, f *files, i int, e dockerEntry) (ocispec.Descriptor, error) {
	where := fmt.Sprintf("%s entry %d", dockerManifestFile, i)
	config, err := f.lookup(e.Config, where+" config")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	config.MediaType = images.MediaTypeDockerSchema2Config
	img, err := images.ReadConfig(ctx, imp.cs, config)
	if err != nil {
		return ocispec.Descriptor{}, contentError(err, where+" config", config)
	}
	if len(e.Layers) != len(img.RootFS.DiffIDs) {
		return ocispec.Descriptor{}, badArchive("%s lists %d layers but its config has %d diff IDs",
			where, len(e.Layers), len(img.RootFS.DiffIDs))
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: images.MediaTypeDockerSchema2Manifest,
		Config:    config,
		Layers:    make([]ocispec.Descriptor, 0, len(e.Layers)),
	}
	for j, name := range e.Layers {
		layer, err := imp.dockerLayer(ctx, f, fmt.Sprintf("%s layer %d", where, j), name, img.RootFS.DiffIDs[j])
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		m.Layers = append(m.Layers, layer)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode manifest for %s: %w", where, err)
	}
	desc := ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := imp.writeBytes(ctx, desc, data); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// dockerLayer describes a layer file with the media type its compression
// calls for. An uncompressed layer must be the one its config names.
func (imp *importer) dockerLayer(ctx context.Context, f *files, where, name string, diffID digest.Digest) (ocispec.Descriptor, error) {
	desc, err := f.lookup(name, where)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	c, err := detect(ctx, imp.cs, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", where, err)
	}
	switch c {
	case compression.Uncompressed:
		if desc.Digest != diffID {
			return ocispec.Descriptor{}, badArchive("%s (%s) is %s, but its config names diff ID %s", where, name, desc.Digest, diffID)
		}
		desc.MediaType = images.MediaTypeDockerSchema2Layer
	case compression.Gzip:
		desc.MediaType = images.MediaTypeDockerSchema2LayerGzip
	case compression.Zstd:
		// Docker's schema defines no zstd type; containerd uses OCI's.
		desc.MediaType = ocispec.MediaTypeImageLayerZstd
	default:
		return ocispec.Descriptor{}, badArchive("%s (%s) has unknown compression %v", where, name, c)
	}
	return desc, nil
}

// detect reads a blob's first bytes to tell its compression.
func detect(ctx context.Context, cs content.Provider, desc ocispec.Descriptor) (compression.Compression, error) {
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	head := make([]byte, 4)
	n, err := ra.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return 0, fmt.Errorf("read %s: %w", desc.Digest, err)
	}
	return compression.Detect(head[:n]), nil
}

// lookup finds the blob an archive path names, following links.
func (f *files) lookup(name, where string) (ocispec.Descriptor, error) {
	clean, err := entryName(name)
	if err != nil {
		return ocispec.Descriptor{}, badArchive("%s: %v", where, err)
	}
	for range 16 {
		if desc, ok := f.blobs[clean]; ok {
			return desc, nil
		}
		target, ok := f.links[clean]
		if !ok {
			break
		}
		clean = target
	}
	return ocispec.Descriptor{}, badArchive("%s: %q is not in the archive", where, name)
}

// repos is the legacy `repositories` file: repository → tag → top layer ID.
type repos map[string]map[string]string

func repositories(f *files) (repos, error) {
	data := f.meta[repositoriesFile]
	if data == nil {
		return nil, nil
	}
	var r repos
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, badArchive("%s: invalid JSON: %v", repositoriesFile, err)
	}
	return r, nil
}

// names returns the names the repositories file gives the image whose top
// layer has ID id, for entries of manifest.json without RepoTags.
func (r repos) names(id string, entry int) ([]string, error) {
	var out []string
	for repo, tags := range r {
		for tag, layer := range tags {
			if layer != id {
				continue
			}
			n, err := normalizeName(repo+":"+tag, fmt.Sprintf("%s for manifest.json entry %d", repositoriesFile, entry))
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// addDigestNames gives roots "<base>@<digest>" names when asked to.
func (imp *importer) addDigestNames(roots []root) {
	if imp.digestBase == "" {
		return
	}
	for i := range roots {
		if imp.opts.SkipDigestForNamed && len(roots[i].names) > 0 {
			continue
		}
		roots[i].names = append(roots[i].names, digestName(imp.digestBase, roots[i].desc.Digest))
	}
}

// indexRoot stores the archive's index (index.json, or for a Docker
// archive an index of the manifests built) to keep it as an image.
func (imp *importer) indexRoot(ctx context.Context, f *files, index ocispec.Index) (root, error) {
	data := f.meta[ocispec.ImageIndexFile]
	if data == nil {
		var err error
		if data, err = json.Marshal(index); err != nil {
			return root{}, fmt.Errorf("encode index: %w", err)
		}
	}
	desc := indexDescriptor(data)
	if err := imp.writeBytes(ctx, desc, data); err != nil {
		return root{}, err
	}
	return root{desc: desc, names: []string{imp.indexName}, index: true, children: index.Manifests}, nil
}

// writeBytes stores a blob berth made (a manifest, an index).
func (imp *importer) writeBytes(ctx context.Context, desc ocispec.Descriptor, data []byte) error {
	if err := content.WriteBlob(ctx, imp.cs, imp.refs.next(), bytes.NewReader(data), desc); err != nil {
		return fmt.Errorf("store %s: %w", desc.Digest, err)
	}
	return nil
}
