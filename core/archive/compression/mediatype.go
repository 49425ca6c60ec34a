package compression

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// Layer media types of the OCI image spec and Docker's schema 2.
const (
	MediaTypeOCILayer          = "application/vnd.oci.image.layer.v1.tar"
	MediaTypeOCILayerGzip      = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeOCILayerZstd      = "application/vnd.oci.image.layer.v1.tar+zstd"
	MediaTypeOCILayerForeign   = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	MediaTypeOCILayerForeignGz = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	MediaTypeOCILayerForeignZs = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	MediaTypeDockerLayerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

var layerMediaTypes = map[string]Compression{
	MediaTypeOCILayer:           Uncompressed,
	MediaTypeOCILayerGzip:       Gzip,
	MediaTypeOCILayerZstd:       Zstd,
	MediaTypeOCILayerForeign:    Uncompressed,
	MediaTypeOCILayerForeignGz:  Gzip,
	MediaTypeOCILayerForeignZs:  Zstd,
	MediaTypeDockerLayer:        Uncompressed,
	MediaTypeDockerLayerGzip:    Gzip,
	MediaTypeDockerLayerZstd:    Zstd,
	MediaTypeDockerLayerForeign: Gzip,
}

// FromMediaType returns the compression of a layer media type. Media type
// parameters (";...") are ignored. A type that is not a known layer type —
// an encrypted layer, a typo, a config blob — is errdefs.ErrNotImplemented
// naming it.
func FromMediaType(mediaType string) (Compression, error) {
	mt, _, _ := strings.Cut(mediaType, ";")
	mt = strings.TrimSpace(mt)
	if c, ok := layerMediaTypes[mt]; ok {
		return c, nil
	}
	return Uncompressed, fmt.Errorf("layer media type %q: %w", mediaType, errdefs.ErrNotImplemented)
}

// IsLayerMediaType reports whether mediaType is a layer type FromMediaType
// understands.
func IsLayerMediaType(mediaType string) bool {
	_, err := FromMediaType(mediaType)
	return err == nil
}

// Flavor chooses between the OCI and Docker media type families.
type Flavor int

const (
	// OCI is application/vnd.oci.image.layer.v1.*.
	OCI Flavor = iota
	// Docker is application/vnd.docker.image.rootfs.diff.*.
	Docker
)

// MediaType returns the distributable layer media type for c in the chosen
// family.
func MediaType(c Compression, f Flavor) (string, error) {
	var mt string
	switch f {
	case OCI:
		mt = map[Compression]string{Uncompressed: MediaTypeOCILayer, Gzip: MediaTypeOCILayerGzip, Zstd: MediaTypeOCILayerZstd}[c]
	case Docker:
		mt = map[Compression]string{Uncompressed: MediaTypeDockerLayer, Gzip: MediaTypeDockerLayerGzip, Zstd: MediaTypeDockerLayerZstd}[c]
	}
	if mt == "" {
		return "", fmt.Errorf("media type for %v layer (flavor %d): %w", c, int(f), errdefs.ErrNotImplemented)
	}
	return mt, nil
}
