package images

import (
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's schema 2 media types, which registries and `docker save` use
// beside OCI's. The zstd layer type is containerd's, which Docker never
// defined but clients send.
const (
	MediaTypeDockerSchema2Layer            = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerSchema2LayerGzip        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerSchema2LayerZstd        = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	MediaTypeDockerSchema2LayerForeign     = "application/vnd.docker.image.rootfs.foreign.diff.tar"
	MediaTypeDockerSchema2LayerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeDockerSchema2Config           = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerSchema2Manifest         = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerSchema2ManifestList     = "application/vnd.docker.distribution.manifest.list.v2+json"

	// Schema 1 is recognised only to refuse it by name.
	MediaTypeDockerSchema1Manifest         = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	MediaTypeDockerSchema1ManifestUnsigned = "application/vnd.docker.distribution.manifest.v1+json"
)

// AnnotationImageName is containerd's annotation for an image's full name
// ("docker.io/library/busybox:latest") on index.json entries;
// ocispec.AnnotationRefName carries only the tag there.
const AnnotationImageName = "io.containerd.image.name"

const (
	ociLayerPrefix            = "application/vnd.oci.image.layer."
	ociNonDistributablePrefix = "application/vnd.oci.image.layer.nondistributable."
	dockerLayerPrefix         = "application/vnd.docker.image.rootfs."
	dockerForeignPrefix       = "application/vnd.docker.image.rootfs.foreign."
)

// baseType drops media type parameters ("; charset=...") and surrounding
// space, which some producers add.
func baseType(mt string) string {
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	return strings.TrimSpace(mt)
}

// IsIndexType reports an OCI image index or a Docker manifest list.
func IsIndexType(mt string) bool {
	switch baseType(mt) {
	case ocispec.MediaTypeImageIndex, MediaTypeDockerSchema2ManifestList:
		return true
	}
	return false
}

// IsManifestType reports an OCI image manifest or a Docker schema 2
// manifest.
func IsManifestType(mt string) bool {
	switch baseType(mt) {
	case ocispec.MediaTypeImageManifest, MediaTypeDockerSchema2Manifest:
		return true
	}
	return false
}

// IsSchema1Type reports a Docker schema 1 manifest, which berth does not
// support.
func IsSchema1Type(mt string) bool {
	switch baseType(mt) {
	case MediaTypeDockerSchema1Manifest, MediaTypeDockerSchema1ManifestUnsigned:
		return true
	}
	return false
}

// IsConfigType reports an OCI or Docker image config.
func IsConfigType(mt string) bool {
	switch baseType(mt) {
	case ocispec.MediaTypeImageConfig, MediaTypeDockerSchema2Config:
		return true
	}
	return false
}

// IsLayerType reports any OCI or Docker layer type: plain, gzip, zstd,
// foreign or non-distributable (and OCI's other "+suffix" variants).
func IsLayerType(mt string) bool {
	mt = baseType(mt)
	return strings.HasPrefix(mt, ociLayerPrefix) || strings.HasPrefix(mt, dockerLayerPrefix)
}

// IsNonDistributable reports layers registries do not serve (Docker's
// foreign layers, OCI's non-distributable ones, e.g. Windows base layers):
// pulls skip them and archives may lack them.
func IsNonDistributable(mt string) bool {
	mt = baseType(mt)
	return strings.HasPrefix(mt, ociNonDistributablePrefix) || strings.HasPrefix(mt, dockerForeignPrefix)
}

// IsDockerType reports a media type of Docker's family.
func IsDockerType(mt string) bool {
	return strings.HasPrefix(baseType(mt), "application/vnd.docker.")
}

// LayerCompression names a layer type's compression: "gzip", "zstd", or
// "" for an uncompressed tar. ok is false for a type that is not a layer
// or whose compression berth does not know (e.g. "+encrypted").
func LayerCompression(mt string) (compression string, ok bool) {
	mt = baseType(mt)
	if !IsLayerType(mt) {
		return "", false
	}
	switch {
	case strings.HasSuffix(mt, "+gzip"), strings.HasSuffix(mt, ".tar.gzip"):
		return "gzip", true
	case strings.HasSuffix(mt, "+zstd"), strings.HasSuffix(mt, ".tar.zstd"):
		return "zstd", true
	case strings.HasSuffix(mt, ".tar"):
		return "", true
	}
	return "", false
}
