package remotes

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's media types, which registries serve beside OCI's.
const (
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1JWS   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// acceptedManifestTypes is the Accept list for resolving tags: images
// only, multi-platform first.
var acceptedManifestTypes = []string{
	ocispec.MediaTypeImageIndex,
	mediaTypeDockerManifestList,
	ocispec.MediaTypeImageManifest,
	mediaTypeDockerManifest,
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerManifestList
}

func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mediaTypeDockerManifest
}

func isSchema1(mt string) bool {
	return mt == mediaTypeDockerSchema1 || mt == mediaTypeDockerSchema1JWS
}

func isConfig(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == mediaTypeDockerConfig
}

// isNonDistributable marks layers registries do not serve (Windows base
// layers); pulls skip them as containerd does.
func isNonDistributable(mt string) bool {
	return mt == mediaTypeDockerForeignLayer || strings.HasPrefix(mt, "application/vnd.oci.image.layer.nondistributable.")
}

// refKey names the ingest of a descriptor the way containerd does
// ("layer-sha256:…"), so `ctr content active` output reads the same and an
// interrupted ingest is found again by the next pull.
func refKey(desc ocispec.Descriptor) string {
	kind := "unknown"
	switch mt := desc.MediaType; {
	case isIndex(mt):
		kind = "index"
	case isManifest(mt):
		kind = "manifest"
	case isConfig(mt):
		kind = "config"
	case strings.Contains(mt, "layer") || strings.Contains(mt, "rootfs"):
		kind = "layer"
	}
	return kind + "-" + desc.Digest.String()
}

// validateDescriptor checks what a manifest says about a child before it is
// trusted for a request or a write.
func validateDescriptor(desc ocispec.Descriptor) error {
	if err := desc.Digest.Validate(); err != nil {
		return errInvalid("descriptor digest %q: %v", desc.Digest, err)
	}
	if desc.Size < 0 {
		return errInvalid("descriptor %s: negative size %d", desc.Digest, desc.Size)
	}
	return nil
}

// isNetworkError reports failures to reach or keep talking to a server:
// refused or reset connections, timeouts, cut transfers. Certificate
// failures are not among them: they need configuration, not a retry.
func isNetworkError(err error) bool {
	if isCertificateError(err) {
		return false
	}
	var op *net.OpError
	var ne net.Error
	return errors.As(err, &op) || (errors.As(err, &ne) && ne.Timeout()) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE)
}

func isCertificateError(err error) bool {
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	return errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie)
}

func errInvalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}
