package archive

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/images"
)

// ExportOptions adjust Export. The zero value exports the current
// platform with a Docker manifest.json.
type ExportOptions struct {
	// Platform chooses, in each index, the one manifest to export (through
	// nested indexes); nil means platforms.Default(). The index blobs are
	// exported unchanged, so image digests stay the same, while the
	// manifests of other platforms are left out, as containerd does.
	Platform platforms.MatchComparer
	// AllPlatforms exports everything every index refers to; all of it
	// must be in the store.
	AllPlatforms bool
	// SkipDockerManifest leaves out manifest.json.
	SkipDockerManifest bool
	// SkipNonDistributable leaves out non-distributable layers even when
	// the store has them (absent ones are always left out).
	SkipNonDistributable bool
}

// epoch is the modification time of every archive entry, so the same
// images always make the same bytes.
var epoch = time.Unix(0, 0).UTC()

// Export writes imgs to w as a tar of an OCI image layout: oci-layout;
// index.json with one entry per image, annotated with its full name
// (io.containerd.image.name) and tag (org.opencontainers.image.ref.name);
// every blob under blobs/<alg>/<hex>; and, unless skipped, a Docker
// manifest.json naming each image's config and layers for the platform, so
// that `docker load` takes it as well as `ctr images import`. An image
// without a name is listed in index.json without annotations.
//
// Entries are sorted by name with fixed metadata; blobs stream from the
// store without being held in memory and are verified on the way. A
// failure can leave w with a partial archive.
func Export(ctx context.Context, provider content.Provider, w io.Writer, imgs []images.Image, opts ExportOptions) error {
	ex := &exporter{provider: provider, opts: opts, blobs: map[digest.Digest]ocispec.Descriptor{}, done: map[digest.Digest]bool{}}
	if !opts.AllPlatforms && opts.Platform == nil {
		ex.opts.Platform = platforms.Default()
	}
	if len(imgs) == 0 {
		return fmt.Errorf("export: no images given: %w", errdefs.ErrInvalidArgument)
	}
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, img := range imgs {
		if err := ex.image(ctx, img); err != nil {
			return fmt.Errorf("export %s: %w", imageLabel(img), err)
		}
		index.Manifests = append(index.Manifests, indexEntry(img))
	}
	files := []memFile{
		{ocispec.ImageLayoutFile, ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}},
		{ocispec.ImageIndexFile, index},
	}
	if !opts.SkipDockerManifest && len(ex.docker) > 0 {
		files = append(files, memFile{dockerManifestFile, ex.dockerManifest()})
	}
	return ex.write(ctx, w, files)
}

func imageLabel(img images.Image) string {
	if img.Name != "" {
		return img.Name
	}
	return img.Target.Digest.String()
}

// indexEntry is img's index.json entry: its target with name annotations.
func indexEntry(img images.Image) ocispec.Descriptor {
	desc := img.Target
	if img.Name == "" {
		return desc
	}
	annotations := maps.Clone(desc.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[images.AnnotationImageName] = img.Name
	annotations[ocispec.AnnotationRefName] = ociRefName(img.Name)
	desc.Annotations = annotations
	return desc
}

type exporter struct {
	provider content.Provider
	opts     ExportOptions
	blobs    map[digest.Digest]ocispec.Descriptor
	docker   []*dockerExport
	done     map[digest.Digest]bool
}

// dockerExport is one manifest.json entry: a manifest and its names.
type dockerExport struct {
	manifest ocispec.Manifest
	digest   digest.Digest
	tags     []string
}

// image collects the blobs of one image and its manifest.json entry.
func (ex *exporter) image(ctx context.Context, img images.Image) error {
	target := img.Target
	if err := images.CheckDescriptor(target); err != nil {
		return err
	}
	if !images.IsIndexType(target.MediaType) && !images.IsManifestType(target.MediaType) {
		return fmt.Errorf("target %s has media type %q; only indexes and manifests can be exported: %w",
			target.Digest, target.MediaType, errdefs.ErrInvalidArgument)
	}
	var manifest ocispec.Descriptor
	var err error
	if ex.opts.AllPlatforms {
		err = ex.all(ctx, target, 0)
		if err == nil {
			manifest, err = ex.dockerChoice(ctx, target)
		}
	} else {
		manifest, err = ex.selected(ctx, target)
	}
	if err != nil {
		return err
	}
	if manifest.Digest != "" {
		return ex.addDocker(ctx, manifest, img.Name)
	}
	return nil
}

// selected collects the indexes on the way to the platform's manifest and
// that manifest's content; a manifest target whatever its platform.
func (ex *exporter) selected(ctx context.Context, target ocispec.Descriptor) (ocispec.Descriptor, error) {
	if images.IsManifestType(target.MediaType) {
		return target, ex.manifest(ctx, target)
	}
	r, err := images.ResolveManifest(ctx, ex.provider, target, ex.opts.Platform)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, idx := range r.Indexes {
		ex.blobs[idx.Digest] = idx
	}
	return r.Descriptor, ex.manifest(ctx, r.Descriptor)
}

// dockerChoice picks, with every platform exported, the manifest
// manifest.json names: the target itself or the one for Platform (the
// current platform by default); none when the image has no such manifest.
func (ex *exporter) dockerChoice(ctx context.Context, target ocispec.Descriptor) (ocispec.Descriptor, error) {
	if images.IsManifestType(target.MediaType) {
		return target, nil
	}
	platform := ex.opts.Platform
	if platform == nil {
		platform = platforms.Default()
	}
	r, err := images.ResolveManifest(ctx, ex.provider, target, platform)
	if errors.Is(err, images.ErrNoMatch) {
		return ocispec.Descriptor{}, nil
	}
	return r.Descriptor, err
}

// all collects everything below desc.
func (ex *exporter) all(ctx context.Context, desc ocispec.Descriptor, depth int) error {
	if !images.IsIndexType(desc.MediaType) {
		return ex.manifest(ctx, desc)
	}
	if depth >= maxDepth {
		return fmt.Errorf("index %s: indexes nest more than %d deep: %w", desc.Digest, maxDepth, errdefs.ErrInvalidArgument)
	}
	idx, err := images.ReadIndex(ctx, ex.provider, desc)
	if err != nil {
		return err
	}
	ex.blobs[desc.Digest] = desc
	for _, child := range idx.Manifests {
		if images.IsIndexType(child.MediaType) || images.IsManifestType(child.MediaType) {
			if err := ex.all(ctx, child, depth+1); err != nil {
				return err
			}
			continue
		}
		if err := ex.leaf(ctx, child, "entry of index "+desc.Digest.String()); err != nil {
			return err
		}
	}
	return nil
}

// manifest collects a manifest, its config and its layers.
func (ex *exporter) manifest(ctx context.Context, desc ocispec.Descriptor) error {
	if ex.done[desc.Digest] {
		return nil
	}
	ex.done[desc.Digest] = true
	m, err := images.ReadManifest(ctx, ex.provider, desc)
	if err != nil {
		return err
	}
	ex.blobs[desc.Digest] = desc
	if err := ex.leaf(ctx, m.Config, "config of manifest "+desc.Digest.String()); err != nil {
		return err
	}
	for i, l := range m.Layers {
		if err := ex.leaf(ctx, l, fmt.Sprintf("layer %d of manifest %s", i, desc.Digest)); err != nil {
			return err
		}
	}
	return nil
}

// leaf adds a config, layer or artifact blob. Non-distributable layers
// are left out when absent (pulls never fetch them) or when asked to.
func (ex *exporter) leaf(ctx context.Context, desc ocispec.Descriptor, what string) error {
	nonDist := images.IsNonDistributable(desc.MediaType)
	if nonDist && ex.opts.SkipNonDistributable {
		return nil
	}
	ra, err := ex.provider.ReaderAt(ctx, desc)
	if err != nil {
		if nonDist && errdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	size := ra.Size()
	ra.Close()
	if size != desc.Size {
		return fmt.Errorf("%s %s is %d bytes in the store, but its descriptor says %d: %w",
			what, desc.Digest, size, desc.Size, errdefs.ErrFailedPrecondition)
	}
	ex.blobs[desc.Digest] = desc
	return nil
}

// addDocker records manifest under name for manifest.json, when it is an
// image manifest whose config and layers are all exported.
func (ex *exporter) addDocker(ctx context.Context, desc ocispec.Descriptor, name string) error {
	m, err := images.ReadManifest(ctx, ex.provider, desc)
	if err != nil {
		return err
	}
	if !images.IsConfigType(m.Config.MediaType) {
		return nil
	}
	for _, l := range m.Layers {
		if _, ok := ex.blobs[l.Digest]; !ok {
			return nil
		}
	}
	var entry *dockerExport
	for _, e := range ex.docker {
		if e.digest == desc.Digest {
			entry = e
		}
	}
	if entry == nil {
		entry = &dockerExport{manifest: m, digest: desc.Digest}
		ex.docker = append(ex.docker, entry)
	}
	if tag := dockerRepoTag(name); tag != "" && !slices.Contains(entry.tags, tag) {
		entry.tags = append(entry.tags, tag)
	}
	return nil
}

func (ex *exporter) dockerManifest() []dockerEntry {
	out := make([]dockerEntry, 0, len(ex.docker))
	for _, e := range ex.docker {
		de := dockerEntry{Config: blobPath(e.manifest.Config.Digest), RepoTags: e.tags, Layers: []string{}}
		for _, l := range e.manifest.Layers {
			de.Layers = append(de.Layers, blobPath(l.Digest))
		}
		out = append(out, de)
	}
	return out
}

func blobPath(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// memFile is a small archive file encoded from v.
type memFile struct {
	name string
	v    any
}

// write writes the archive: directories, blobs and small files, all in
// name order.
func (ex *exporter) write(ctx context.Context, w io.Writer, files []memFile) error {
	type entry struct {
		name string
		blob *ocispec.Descriptor
		data []byte
		dir  bool
	}
	entries := []entry{{name: ocispec.ImageBlobsDir + "/", dir: true}}
	algs := map[string]bool{}
	for _, desc := range ex.blobs {
		if alg := desc.Digest.Algorithm().String(); !algs[alg] {
			algs[alg] = true
			entries = append(entries, entry{name: ocispec.ImageBlobsDir + "/" + alg + "/", dir: true})
		}
		entries = append(entries, entry{name: blobPath(desc.Digest), blob: &desc})
	}
	for _, f := range files {
		data, err := json.Marshal(f.v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", f.name, err)
		}
		entries = append(entries, entry{name: f.name, data: data})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	tw := tar.NewWriter(w)
	for _, e := range entries {
		var err error
		switch {
		case e.dir:
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: e.name, Mode: 0o755, ModTime: epoch})
		case e.blob != nil:
			err = ex.writeBlob(ctx, tw, e.name, *e.blob)
		default:
			err = writeFile(tw, e.name, e.data)
		}
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish archive: %w", err)
	}
	return nil
}

func writeFile(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// writeBlob streams a blob from the store into the archive, checking its
// size and digest on the way.
func (ex *exporter) writeBlob(ctx context.Context, tw *tar.Writer, name string, desc ocispec.Descriptor) error {
	ra, err := ex.provider.ReaderAt(ctx, desc)
	if err != nil {
		return fmt.Errorf("open blob %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	if ra.Size() != desc.Size {
		return fmt.Errorf("blob %s is %d bytes in the store, but its descriptor says %d: %w", desc.Digest, ra.Size(), desc.Size, errdefs.ErrFailedPrecondition)
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: desc.Size, ModTime: epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	h := desc.Digest.Algorithm().Hash()
	n, err := copyContext(ctx, io.MultiWriter(tw, h), io.NewSectionReader(ra, 0, desc.Size))
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if n != desc.Size {
		return fmt.Errorf("blob %s: read %d of %d bytes: %w", desc.Digest, n, desc.Size, io.ErrUnexpectedEOF)
	}
	if got := digest.NewDigest(desc.Digest.Algorithm(), h); got != desc.Digest {
		return fmt.Errorf("blob %s in the store has digest %s: %w", desc.Digest, got, errdefs.ErrFailedPrecondition)
	}
	return nil
}
