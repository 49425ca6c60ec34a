package images

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
)

// MaxManifestSize bounds every index, manifest and config read into
// memory. A descriptor that claims more is refused before anything is
// read, so a hostile archive or registry cannot make berth allocate
// without bound. Registries refuse manifests over 4 MiB too.
const MaxManifestSize = 4 << 20

// document holds the fields that tell manifests and indexes apart.
type document struct {
	SchemaVersion *int            `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        json.RawMessage `json:"config"`
	Layers        json.RawMessage `json:"layers"`
	Manifests     json.RawMessage `json:"manifests"`
	FSLayers      json.RawMessage `json:"fsLayers"`
}

// checkDocument refuses a blob whose own fields contradict the kind the
// descriptor promised, so a manifest cannot pose as an index or the other
// way round, and refuses schema 1.
func checkDocument(data []byte, desc ocispec.Descriptor, wantIndex bool) error {
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		return invalid(desc, "invalid JSON: %v", err)
	}
	if len(doc.FSLayers) > 0 {
		return fmt.Errorf("%s %s is a Docker schema 1 manifest: %w", desc.MediaType, desc.Digest, errdefs.ErrNotImplemented)
	}
	if doc.SchemaVersion == nil || *doc.SchemaVersion != 2 {
		return invalid(desc, "schemaVersion must be 2")
	}
	if wantIndex {
		if len(doc.Config) > 0 || len(doc.Layers) > 0 || (doc.MediaType != "" && !IsIndexType(doc.MediaType)) {
			return invalid(desc, "expected an index but the blob is a %q manifest", doc.MediaType)
		}
		return nil
	}
	if len(doc.Manifests) > 0 || (doc.MediaType != "" && !IsManifestType(doc.MediaType)) {
		return invalid(desc, "expected a manifest but the blob is a %q index", doc.MediaType)
	}
	return nil
}

func invalid(desc ocispec.Descriptor, format string, args ...any) error {
	return fmt.Errorf("%s %s: %s: %w", kind(desc.MediaType), desc.Digest, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

func kind(mt string) string {
	switch {
	case IsIndexType(mt):
		return "index"
	case IsManifestType(mt):
		return "manifest"
	case IsConfigType(mt):
		return "config"
	case IsLayerType(mt):
		return "layer"
	}
	return "blob"
}

// CheckDescriptor validates what a parent says about a child before the
// child's digest is used as a name or its size as a bound.
func CheckDescriptor(desc ocispec.Descriptor) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("descriptor digest %q: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if desc.Size < 0 {
		return fmt.Errorf("descriptor %s has negative size %d: %w", desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	return nil
}

func checkChildren(parent ocispec.Descriptor, what string, children []ocispec.Descriptor) error {
	for i, c := range children {
		if err := CheckDescriptor(c); err != nil {
			return invalid(parent, "%s %d: %v", what, i, err)
		}
	}
	return nil
}

// ReadIndex reads and validates the index (or Docker manifest list) desc.
func ReadIndex(ctx context.Context, provider content.Provider, desc ocispec.Descriptor) (ocispec.Index, error) {
	data, err := content.ReadBlob(ctx, provider, desc, MaxManifestSize)
	if err != nil {
		return ocispec.Index{}, fmt.Errorf("read index: %w", err)
	}
	return DecodeIndex(desc, data)
}

// DecodeIndex validates and decodes index bytes already in memory.
func DecodeIndex(desc ocispec.Descriptor, data []byte) (ocispec.Index, error) {
	if err := checkDocument(data, desc, true); err != nil {
		return ocispec.Index{}, err
	}
	var index ocispec.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return ocispec.Index{}, invalid(desc, "%v", err)
	}
	if err := checkChildren(desc, "manifest", index.Manifests); err != nil {
		return ocispec.Index{}, err
	}
	return index, nil
}

// ReadManifest reads and validates the image manifest desc.
func ReadManifest(ctx context.Context, provider content.Provider, desc ocispec.Descriptor) (ocispec.Manifest, error) {
	data, err := content.ReadBlob(ctx, provider, desc, MaxManifestSize)
	if err != nil {
		return ocispec.Manifest{}, fmt.Errorf("read manifest: %w", err)
	}
	return DecodeManifest(desc, data)
}

// DecodeManifest validates and decodes manifest bytes already in memory.
func DecodeManifest(desc ocispec.Descriptor, data []byte) (ocispec.Manifest, error) {
	if err := checkDocument(data, desc, false); err != nil {
		return ocispec.Manifest{}, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return ocispec.Manifest{}, invalid(desc, "%v", err)
	}
	if err := checkChildren(desc, "config", []ocispec.Descriptor{m.Config}); err != nil {
		return ocispec.Manifest{}, err
	}
	if err := checkChildren(desc, "layer", m.Layers); err != nil {
		return ocispec.Manifest{}, err
	}
	return m, nil
}

// ReadConfig reads and decodes the image config desc; its diff IDs must be
// valid digests.
func ReadConfig(ctx context.Context, provider content.Provider, desc ocispec.Descriptor) (ocispec.Image, error) {
	data, err := content.ReadBlob(ctx, provider, desc, MaxManifestSize)
	if err != nil {
		return ocispec.Image{}, fmt.Errorf("read config: %w", err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(data, &img); err != nil {
		return ocispec.Image{}, invalid(desc, "invalid JSON: %v", err)
	}
	for i, d := range img.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return ocispec.Image{}, invalid(desc, "diff ID %d %q: %v", i, d, err)
		}
	}
	return img, nil
}

// Children returns what desc refers to: an index's manifests, a manifest's
// config followed by its layers. Configs, layers and blobs of unknown type
// have none.
func Children(ctx context.Context, provider content.Provider, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	switch {
	case IsManifestType(desc.MediaType):
		m, err := ReadManifest(ctx, provider, desc)
		if err != nil {
			return nil, err
		}
		return append([]ocispec.Descriptor{m.Config}, m.Layers...), nil
	case IsIndexType(desc.MediaType):
		idx, err := ReadIndex(ctx, provider, desc)
		if err != nil {
			return nil, err
		}
		return idx.Manifests, nil
	}
	return nil, nil
}

// RootFS returns the diff IDs (digests of the uncompressed layers, bottom
// first) of the image config configDesc.
func RootFS(ctx context.Context, provider content.Provider, configDesc ocispec.Descriptor) ([]digest.Digest, error) {
	img, err := ReadConfig(ctx, provider, configDesc)
	if err != nil {
		return nil, err
	}
	return img.RootFS.DiffIDs, nil
}
