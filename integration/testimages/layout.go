package testimages

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationImageName is containerd's index.json annotation for an image's
// full reference; ocispec.AnnotationRefName carries only the tag.
const AnnotationImageName = "io.containerd.image.name"

// WriteOptions adjust [WriteOCILayout] and [WriteOCIArchive].
type WriteOptions struct {
	// DockerManifest adds a Docker manifest.json beside the OCI layout (as
	// berth's export and `docker save` since Docker 25 do), naming each
	// image's host-platform config and layers under blobs/.
	DockerManifest bool
	// NestedIndex wraps each image in one more image index, so index.json
	// points at an index that points at the image's manifest or index.
	NestedIndex bool
}

// layoutFile is one regular file of a layout or archive.
type layoutFile struct {
	name string
	data []byte
}

// layoutFiles lays out images as an OCI image layout: oci-layout,
// index.json (one entry per image, annotated with its name), optionally
// manifest.json, and every blob, in a fixed order.
func layoutFiles(opts WriteOptions, images []*Image) ([]layoutFile, error) {
	blobs := map[digest.Digest][]byte{}
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, img := range images {
		maps.Copy(blobs, img.Blobs)
		desc := img.Target
		if opts.NestedIndex {
			wrapped, err := BuildIndex(img.Name, []*Image{img}, nil)
			if err != nil {
				return nil, err
			}
			maps.Copy(blobs, wrapped.Blobs)
			desc = wrapped.Target
		}
		desc.Annotations = nameAnnotations(img.Name)
		index.Manifests = append(index.Manifests, desc)
	}
	files := []layoutFile{}
	add := func(name string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", name, err)
		}
		files = append(files, layoutFile{name, data})
		return nil
	}
	if err := add(ocispec.ImageLayoutFile, ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}); err != nil {
		return nil, err
	}
	if err := add(ocispec.ImageIndexFile, index); err != nil {
		return nil, err
	}
	if opts.DockerManifest {
		m, err := dockerManifestOfLayout(images)
		if err != nil {
			return nil, err
		}
		if err := add(dockerManifestFile, m); err != nil {
			return nil, err
		}
	}
	for _, d := range slices.Sorted(maps.Keys(blobs)) {
		files = append(files, layoutFile{blobPath(d), blobs[d]})
	}
	return files, nil
}

func blobPath(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

func nameAnnotations(name string) map[string]string {
	if name == "" {
		return nil
	}
	_, tag := splitReference(name)
	return map[string]string{ocispec.AnnotationRefName: tag, AnnotationImageName: name}
}

// splitReference splits "docker.io/library/busybox:latest" into repository
// and tag; a digest reference yields the digest as its tag, and no tag
// means "latest".
func splitReference(name string) (repo, tag string) {
	if i := strings.Index(name, "@"); i >= 0 {
		return name[:i], name[i+1:]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[:i], name[i+1:]
	}
	return name, "latest"
}

// familiarName shortens a normalized reference the way Docker prints it:
// docker.io/library/busybox:latest -> busybox:latest.
func familiarName(name string) string {
	name = strings.TrimPrefix(name, "docker.io/")
	return strings.TrimPrefix(name, "library/")
}

// WriteOCILayout writes images as an OCI image layout into dir, creating it.
// index.json has one entry per image, annotated with its tag
// (org.opencontainers.image.ref.name) and full name (io.containerd.image.name).
func WriteOCILayout(dir string, opts WriteOptions, images ...*Image) error {
	files, err := layoutFiles(opts, images)
	if err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write layout: %w", err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return fmt.Errorf("write layout: %w", err)
		}
	}
	return nil
}

// WriteOCIArchive writes images as a tar of an OCI image layout (see
// [WriteOCILayout]), the format of `ctr images export` and `docker save`.
func WriteOCIArchive(w io.Writer, opts WriteOptions, images ...*Image) error {
	files, err := layoutFiles(opts, images)
	if err != nil {
		return err
	}
	return writeTar(w, files)
}

// SaveFile creates path and fills it with write, e.g.
// SaveFile(p, func(w io.Writer) error { return WriteOCIArchive(w, opts, img) }).
func SaveFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// writeTar writes files, preceded by their parent directories, with fixed
// metadata.
func writeTar(w io.Writer, files []layoutFile) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, f := range files {
		if err := writeTarDirs(tw, path.Dir(f.name), dirs); err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: Epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write archive entry %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("write archive entry %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close archive: %w", err)
	}
	return nil
}

func writeTarDirs(tw *tar.Writer, dir string, done map[string]bool) error {
	if dir == "." || dir == "/" || done[dir] {
		return nil
	}
	if err := writeTarDirs(tw, path.Dir(dir), done); err != nil {
		return err
	}
	done[dir] = true
	hdr := &tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: Epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write archive directory %s: %w", dir, err)
	}
	return nil
}

// dockerManifestFile is the manifest of `docker save` archives.
const dockerManifestFile = "manifest.json"

// dockerManifestEntry is one image of a Docker manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func dockerManifestOfLayout(images []*Image) ([]dockerManifestEntry, error) {
	var entries []dockerManifestEntry
	for _, img := range images {
		r, err := img.Resolve("")
		if err != nil {
			return nil, fmt.Errorf("docker manifest for %s: %w", img.Name, err)
		}
		e := dockerManifestEntry{Config: blobPath(r.Manifest.Config.Digest), RepoTags: repoTags(img.Name)}
		for _, l := range r.Manifest.Layers {
			e.Layers = append(e.Layers, blobPath(l.Digest))
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func repoTags(name string) []string {
	if name == "" {
		return nil
	}
	if strings.Contains(name, "@") {
		return nil // Docker has no tag for a digest reference
	}
	return []string{familiarName(name)}
}

// checkNamed reports images without a name where one is required.
func checkNamed(images []*Image) error {
	for i, img := range images {
		if img.Name == "" {
			return fmt.Errorf("image %d (%s) has no name: %w", i, img.Target.Digest, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
