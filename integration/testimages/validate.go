package testimages

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"testing/fstest"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ValidateArchive reads an OCI or Docker archive (see [Validate]) into
// memory and validates it. Entries with absolute or "../" names are invalid.
func ValidateArchive(r io.Reader) error {
	fsys := fstest.MapFS{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := path.Clean(hdr.Name)
		if !fs.ValidPath(name) {
			return fmt.Errorf("archive entry %q escapes the archive: %w", hdr.Name, errdefs.ErrInvalidArgument)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			fsys[name] = &fstest.MapFile{Mode: fs.ModeDir | 0o755}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("read archive entry %s: %w", name, err)
			}
			fsys[name] = &fstest.MapFile{Data: data, Mode: 0o644}
		default:
			return fmt.Errorf("archive entry %s has type %q: %w", name, hdr.Typeflag, errdefs.ErrInvalidArgument)
		}
	}
	return Validate(fsys)
}

// Validate checks the structure of an OCI image layout, a Docker save
// layout, or both in one tree (fsys, e.g. os.DirFS(dir)): oci-layout and
// index.json are well-formed; every descriptor reachable from index.json
// resolves to a blob of its digest and size whose media type fits where it
// is referenced; manifests and configs agree (diff IDs are the digests of
// the decompressed layers, platforms match, history counts layers); and
// every manifest.json entry names a config and layers that agree likewise.
func Validate(fsys fs.FS) error {
	v := &validator{fsys: fsys, checked: map[digest.Digest]bool{}}
	_, errLayout := fs.Stat(fsys, ocispec.ImageLayoutFile)
	_, errDocker := fs.Stat(fsys, dockerManifestFile)
	if errLayout != nil && errDocker != nil {
		return fmt.Errorf("neither %s nor %s: %w", ocispec.ImageLayoutFile, dockerManifestFile, errdefs.ErrInvalidArgument)
	}
	if errLayout == nil {
		if err := v.layout(); err != nil {
			return err
		}
	}
	if errDocker == nil {
		return v.dockerManifest()
	}
	return nil
}

type validator struct {
	fsys    fs.FS
	checked map[digest.Digest]bool
}

func (v *validator) readJSON(name string, out any) error {
	data, err := fs.ReadFile(v.fsys, name)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decode %s: %w", name, err)
	}
	return nil
}

func (v *validator) layout() error {
	var layout ocispec.ImageLayout
	if err := v.readJSON(ocispec.ImageLayoutFile, &layout); err != nil {
		return err
	}
	if layout.Version != ocispec.ImageLayoutVersion {
		return fmt.Errorf("%s version %q, want %q", ocispec.ImageLayoutFile, layout.Version, ocispec.ImageLayoutVersion)
	}
	var index ocispec.Index
	if err := v.readJSON(ocispec.ImageIndexFile, &index); err != nil {
		return err
	}
	if err := checkIndexHeader(index, ocispec.MediaTypeImageIndex); err != nil {
		return fmt.Errorf("%s: %w", ocispec.ImageIndexFile, err)
	}
	for i, desc := range index.Manifests {
		if err := v.descriptor(desc); err != nil {
			return fmt.Errorf("%s manifests[%d]: %w", ocispec.ImageIndexFile, i, err)
		}
	}
	return nil
}

func checkIndexHeader(index ocispec.Index, mediaType string) error {
	if index.SchemaVersion != 2 {
		return fmt.Errorf("schemaVersion %d, want 2", index.SchemaVersion)
	}
	if index.MediaType != "" && index.MediaType != mediaType {
		return fmt.Errorf("mediaType %q, descriptor says %q", index.MediaType, mediaType)
	}
	return nil
}

// descriptor validates an index or manifest descriptor and everything below.
func (v *validator) descriptor(desc ocispec.Descriptor) error {
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, mediaTypeDockerList:
		return v.index(desc)
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		return v.manifest(desc)
	}
	return fmt.Errorf("descriptor %s has media type %q, want an index or manifest", desc.Digest, desc.MediaType)
}

func (v *validator) index(desc ocispec.Descriptor) error {
	data, err := v.blob(desc)
	if err != nil {
		return err
	}
	var index ocispec.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return fmt.Errorf("decode index %s: %w", desc.Digest, err)
	}
	if err := checkIndexHeader(index, desc.MediaType); err != nil {
		return fmt.Errorf("index %s: %w", desc.Digest, err)
	}
	for i, child := range index.Manifests {
		if err := v.descriptor(child); err != nil {
			return fmt.Errorf("index %s manifests[%d]: %w", desc.Digest, i, err)
		}
	}
	return nil
}

// Media types allowed inside OCI and Docker manifests.
var (
	ociLayerTypes = map[string]bool{
		ocispec.MediaTypeImageLayer: true, ocispec.MediaTypeImageLayerGzip: true, ocispec.MediaTypeImageLayerZstd: true,
		//lint:ignore SA1019 non-distributable layers are deprecated for writing, still valid to read
		ocispec.MediaTypeImageLayerNonDistributable: true,
		//lint:ignore SA1019 as above
		ocispec.MediaTypeImageLayerNonDistributableGzip: true,
	}
	dockerLayerTypes = map[string]bool{mediaTypeDockerLayer: true, mediaTypeDockerGzip: true}
)

func (v *validator) manifest(desc ocispec.Descriptor) error {
	data, err := v.blob(desc)
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("decode manifest %s: %w", desc.Digest, err)
	}
	if m.SchemaVersion != 2 {
		return fmt.Errorf("manifest %s: schemaVersion %d, want 2", desc.Digest, m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != desc.MediaType {
		return fmt.Errorf("manifest %s: mediaType %q, descriptor says %q", desc.Digest, m.MediaType, desc.MediaType)
	}
	configType, layerTypes := ocispec.MediaTypeImageConfig, ociLayerTypes
	if desc.MediaType == mediaTypeDockerManifest {
		configType, layerTypes = mediaTypeDockerConfig, dockerLayerTypes
	}
	if m.Config.MediaType != configType {
		return fmt.Errorf("manifest %s: config media type %q, want %q", desc.Digest, m.Config.MediaType, configType)
	}
	config, err := v.config(m.Config)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if desc.Platform != nil {
		got, want := platforms.Format(platforms.Normalize(*desc.Platform)), platforms.Format(platforms.Normalize(config.Platform))
		if got != want {
			return fmt.Errorf("manifest %s: descriptor platform %s, config says %s", desc.Digest, got, want)
		}
	}
	if len(config.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("manifest %s: %d layers, config has %d diff IDs", desc.Digest, len(m.Layers), len(config.RootFS.DiffIDs))
	}
	for i, l := range m.Layers {
		if !layerTypes[l.MediaType] {
			return fmt.Errorf("manifest %s layer %d: media type %q not allowed in %s", desc.Digest, i, l.MediaType, desc.MediaType)
		}
		if err := v.layer(l, config.RootFS.DiffIDs[i]); err != nil {
			return fmt.Errorf("manifest %s layer %d: %w", desc.Digest, i, err)
		}
	}
	return nil
}

func (v *validator) config(desc ocispec.Descriptor) (ocispec.Image, error) {
	data, err := v.blob(desc)
	if err != nil {
		return ocispec.Image{}, err
	}
	return decodeConfig(desc.Digest.String(), data)
}

func decodeConfig(name string, data []byte) (ocispec.Image, error) {
	var config ocispec.Image
	if err := json.Unmarshal(data, &config); err != nil {
		return config, fmt.Errorf("decode config %s: %w", name, err)
	}
	if config.OS == "" || config.Architecture == "" {
		return config, fmt.Errorf("config %s: os %q architecture %q must be set", name, config.OS, config.Architecture)
	}
	if config.RootFS.Type != "layers" {
		return config, fmt.Errorf("config %s: rootfs type %q, want layers", name, config.RootFS.Type)
	}
	nonEmpty := 0
	for _, h := range config.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if len(config.History) > 0 && nonEmpty != len(config.RootFS.DiffIDs) {
		return config, fmt.Errorf("config %s: %d non-empty history entries for %d layers", name, nonEmpty, len(config.RootFS.DiffIDs))
	}
	return config, nil
}

// blob reads and verifies the blob of a small JSON descriptor.
func (v *validator) blob(desc ocispec.Descriptor) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("descriptor digest %q: %w", desc.Digest, err)
	}
	data, err := fs.ReadFile(v.fsys, blobPath(desc.Digest))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if int64(len(data)) != desc.Size {
		return nil, fmt.Errorf("blob %s: %d bytes, descriptor says %d", desc.Digest, len(data), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return nil, fmt.Errorf("blob %s: content has digest %s", desc.Digest, got)
	}
	return data, nil
}

// layer streams a layer blob once, checking its digest, size and diff ID.
func (v *validator) layer(desc ocispec.Descriptor, diffID digest.Digest) error {
	if v.checked[desc.Digest] {
		return nil
	}
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("descriptor digest %q: %w", desc.Digest, err)
	}
	size, dgst, gotDiffID, err := v.digestLayer(blobPath(desc.Digest))
	if err != nil {
		return err
	}
	if size != desc.Size || dgst != desc.Digest {
		return fmt.Errorf("blob %s: %d bytes with digest %s, descriptor says %d bytes", desc.Digest, size, dgst, desc.Size)
	}
	if gotDiffID != diffID {
		return fmt.Errorf("blob %s: uncompressed digest %s, config says %s", desc.Digest, gotDiffID, diffID)
	}
	v.checked[desc.Digest] = true
	return nil
}

// digestLayer returns the size and digest of a stored layer file and the
// digest of its decompressed tar, which must be a readable tar stream.
func (v *validator) digestLayer(name string) (int64, digest.Digest, digest.Digest, error) {
	f, err := v.fsys.Open(name)
	if err != nil {
		return 0, "", "", fmt.Errorf("layer %s: %w", name, err)
	}
	defer f.Close()
	stored := digest.Canonical.Digester()
	counter := &countWriter{}
	tee := io.TeeReader(f, io.MultiWriter(stored.Hash(), counter))
	r, err := decompressor(tee)
	if err != nil {
		return 0, "", "", fmt.Errorf("layer %s: %w", name, err)
	}
	defer r.Close()
	diff := digest.Canonical.Digester()
	if err := checkTarStream(io.TeeReader(r, diff.Hash())); err != nil {
		return 0, "", "", fmt.Errorf("layer %s: %w", name, err)
	}
	// The tar reader stops at the end-of-archive marker; hash the rest too.
	if _, err := io.Copy(diff.Hash(), r); err != nil {
		return 0, "", "", fmt.Errorf("layer %s: %w", name, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return 0, "", "", fmt.Errorf("layer %s: %w", name, err)
	}
	return counter.n, stored.Digest(), diff.Digest(), nil
}

func checkTarStream(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a tar stream: %w", err)
		}
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func (v *validator) dockerManifest() error {
	var entries []dockerManifestEntry
	if err := v.readJSON(dockerManifestFile, &entries); err != nil {
		return err
	}
	if len(entries) == 0 {
		return fmt.Errorf("%s lists no images: %w", dockerManifestFile, errdefs.ErrInvalidArgument)
	}
	var errs []error
	for i, e := range entries {
		if err := v.dockerEntry(e); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", dockerManifestFile, i, err))
		}
	}
	return errors.Join(errs...)
}

func (v *validator) dockerEntry(e dockerManifestEntry) error {
	for _, tag := range e.RepoTags {
		if tag == "" {
			return fmt.Errorf("empty RepoTag")
		}
	}
	for _, name := range append([]string{e.Config}, e.Layers...) {
		if !fs.ValidPath(name) {
			return fmt.Errorf("path %q escapes the archive", name)
		}
	}
	data, err := fs.ReadFile(v.fsys, e.Config)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	config, err := decodeConfig(e.Config, data)
	if err != nil {
		return err
	}
	if len(config.RootFS.DiffIDs) != len(e.Layers) {
		return fmt.Errorf("%d layers, config has %d diff IDs", len(e.Layers), len(config.RootFS.DiffIDs))
	}
	for i, name := range e.Layers {
		_, _, diffID, err := v.digestLayer(name)
		if err != nil {
			return err
		}
		if diffID != config.RootFS.DiffIDs[i] {
			return fmt.Errorf("layer %s: uncompressed digest %s, config says %s", name, diffID, config.RootFS.DiffIDs[i])
		}
	}
	return nil
}
