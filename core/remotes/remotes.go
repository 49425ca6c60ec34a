// Package remotes talks to container registries: it resolves references to
// descriptors, fetches manifests and blobs into a content store (verified,
// resumable, collapsed across concurrent pulls, bounded in concurrency) and
// pushes image graphs. Endpoints, mirrors and TLS come from hosts.toml
// (package hosts), credentials from the caller (package auth); the HTTP
// distribution protocol and its auth challenges are oras-go's.
//
// Mirror semantics follow containerd: endpoints are tried in configured
// order, the registry's own server last; a mirror that fails (connection
// refused, 5xx, 404, …) hands over to the next, and a mirror that serves
// means the origin is never contacted.
package remotes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/berthd/berth/core/reference"
	"github.com/berthd/berth/core/remotes/auth"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// MaxManifestSize bounds manifests and indexes, which are read into memory:
// larger ones are refused before any byte is read.
const MaxManifestSize = 4 << 20

// DefaultMaxConcurrency is the default bound on concurrent blob transfers.
const DefaultMaxConcurrency = 3

// Options configure a Resolver.
type Options struct {
	// Hosts locates hosts.toml and allows plain HTTP.
	Hosts hosts.Options
	// Credentials answer per registry host; nil is anonymous everywhere.
	Credentials *auth.Store
	// CredentialFunc, when set, is asked instead of Credentials, and only
	// when a registry challenges a request (so an anonymous pull asks
	// nothing). It lets a daemon ask its client for credentials per
	// request rather than keep them.
	CredentialFunc func(ctx context.Context, host string) (auth.Credential, error)
	// Header is sent with every request (token requests included), beside
	// the per-endpoint headers of hosts.toml.
	Header http.Header
	// Limits, when set, bound transfers together with every other Resolver
	// sharing them, in place of MaxConcurrency: a daemon shares one Limits
	// across its requests so that its bound holds however many run.
	Limits *Limits
	// UserAgent is sent with every request; default "berth".
	UserAgent string
	// MaxConcurrency bounds concurrent blob downloads, and separately
	// uploads, through this Resolver; default DefaultMaxConcurrency.
	MaxConcurrency int
	// Logger receives debug logs of endpoint fall-through; default
	// slog.Default().
	Logger *slog.Logger
}

// Limits bound concurrent blob downloads, and separately uploads, across
// the Resolvers that share them.
type Limits struct {
	downloads chan struct{}
	uploads   chan struct{}
}

// NewLimits allows n concurrent downloads and n concurrent uploads;
// n <= 0 means DefaultMaxConcurrency.
func NewLimits(n int) *Limits {
	if n <= 0 {
		n = DefaultMaxConcurrency
	}
	return &Limits{downloads: make(chan struct{}, n), uploads: make(chan struct{}, n)}
}

// Resolver resolves, fetches and pushes. One Resolver carries one set of
// credentials and caches their tokens; it is safe for concurrent use.
type Resolver struct {
	opts      Options
	userAgent string
	log       *slog.Logger
	authCache orasauth.Cache
	downloads chan struct{}
	uploads   chan struct{}
}

// NewResolver returns a Resolver.
func NewResolver(opts Options) *Resolver {
	limits := opts.Limits
	if limits == nil {
		limits = NewLimits(opts.MaxConcurrency)
	}
	r := &Resolver{
		opts:      opts,
		userAgent: opts.UserAgent,
		log:       opts.Logger,
		authCache: orasauth.NewCache(),
		downloads: limits.downloads,
		uploads:   limits.uploads,
	}
	if r.userAgent == "" {
		r.userAgent = "berth"
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r
}

// ParseRef parses a reference in Docker's normalised form, with "latest"
// added when neither tag nor digest is given.
func ParseRef(ref string) (reference.Reference, error) {
	return reference.ParseNormalized(ref)
}

// Resolve returns the root descriptor (manifest or index) a reference
// names. Tags are resolved only on endpoints trusted with "resolve";
// digest references on any "pull" endpoint, since the digest vouches for
// the content.
func (r *Resolver) Resolve(ctx context.Context, ref string) (reference.Reference, ocispec.Descriptor, error) {
	name, err := ParseRef(ref)
	if err != nil {
		return name, ocispec.Descriptor{}, err
	}
	want := hosts.CapResolve
	if name.Digest != "" {
		want = hosts.CapPull
	}
	eps, err := r.endpoints(name.Domain, want)
	if err != nil {
		return name, ocispec.Descriptor{}, err
	}
	var errs []error
	for _, ep := range eps {
		desc, err := r.resolveOn(ctx, ep, name)
		if err == nil {
			return name, desc, nil
		}
		if ctx.Err() != nil {
			return name, ocispec.Descriptor{}, ctx.Err()
		}
		r.log.DebugContext(ctx, "resolve failed on endpoint", "ref", name.String(), "endpoint", ep.URL(), "error", err)
		errs = append(errs, err)
	}
	return name, ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", name, summarize(errs))
}

// resolveOn asks one endpoint: HEAD first, GET when HEAD is not answered
// usefully (some registries do not implement HEAD on manifests).
func (r *Resolver) resolveOn(ctx context.Context, ep *endpoint, name reference.Reference) (ocispec.Descriptor, error) {
	repo := ep.repository(ctx, name.Path)
	obj := name.Object()
	desc, err := repo.Resolve(ctx, obj)
	if err != nil && headInconclusive(err) {
		var rc interface{ Close() error }
		desc, rc, err = repo.FetchReference(ctx, obj)
		if err == nil {
			rc.Close()
		}
	}
	if err != nil {
		return ocispec.Descriptor{}, classify(ep, err)
	}
	if name.Digest != "" && desc.Digest != name.Digest {
		return ocispec.Descriptor{}, fmt.Errorf("registry %s: answered %s for %s: %w", ep.Host, desc.Digest, name.Digest, errdefs.ErrFailedPrecondition)
	}
	if err := checkRoot(desc); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("registry %s: %w", ep.Host, err)
	}
	return desc, nil
}

// checkRoot accepts manifests and indexes within the size bound.
func checkRoot(desc ocispec.Descriptor) error {
	switch {
	case isSchema1(desc.MediaType):
		return fmt.Errorf("manifest %s is Docker schema 1 (%s), which is not supported: %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
	case !isManifest(desc.MediaType) && !isIndex(desc.MediaType):
		return fmt.Errorf("%s has media type %q, not an image manifest or index: %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
	}
	return checkManifestSize(desc)
}

func checkManifestSize(desc ocispec.Descriptor) error {
	if desc.Size < 0 || desc.Size > MaxManifestSize {
		return fmt.Errorf("manifest %s is %d bytes, over the %d byte limit: %w", desc.Digest, desc.Size, MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	return nil
}

// repository returns the oras client for a repository on this endpoint.
func (e *endpoint) repository(ctx context.Context, path string) *remote.Repository {
	return &remote.Repository{
		Client:             e,
		Reference:          registry.Reference{Registry: e.Host, Repository: path},
		PlainHTTP:          e.scheme(ctx) == "http",
		ManifestMediaTypes: acceptedManifestTypes,
		MaxMetadataBytes:   MaxManifestSize,
		// Tag pushes must not trigger referrers-index maintenance.
		SkipReferrersGC: true,
	}
}

// headInconclusive reports HEAD failures a GET may get past: the method
// refused, or an answer without the headers a descriptor needs (digest,
// length, type).
func headInconclusive(err error) bool {
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.StatusCode {
		case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusNotImplemented:
			return true
		}
		return false
	}
	return !errors.Is(err, errdef.ErrNotFound) && !errors.Is(err, orasauth.ErrBasicCredentialNotFound) &&
		!isNetworkError(err) && !isCertificateError(err) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// classify wraps an oras or transport error with the endpoint it came from
// and the errdefs class it belongs to.
func classify(ep *endpoint, err error) error {
	if err == nil {
		return nil
	}
	host := ep.Host
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			return fmt.Errorf("registry %s: %w: %w", host, errdefs.ErrUnauthenticated, err)
		case resp.StatusCode == http.StatusForbidden:
			return fmt.Errorf("registry %s: %w: %w", host, errdefs.ErrPermissionDenied, err)
		case resp.StatusCode == http.StatusNotFound:
			return fmt.Errorf("registry %s: %w: %w", host, errdefs.ErrNotFound, err)
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			return fmt.Errorf("registry %s: %w: %w", host, errdefs.ErrUnavailable, err)
		}
		return fmt.Errorf("registry %s: %w", host, err)
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("registry %s: %w: %w", host, errdefs.ErrNotFound, err)
	case errors.Is(err, orasauth.ErrBasicCredentialNotFound):
		return fmt.Errorf("registry %s: %w: no credentials for basic auth: %w", host, errdefs.ErrUnauthenticated, err)
	case isNetworkError(err):
		return fmt.Errorf("registry %s: %w: %w", host, errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("registry %s: %w", host, err)
}

// summarize makes the error to report after every endpoint failed: the
// last "not found" when all say so, else all of them, so that a pull
// through failing mirrors reports why each failed.
func summarize(errs []error) error {
	if len(errs) == 0 {
		return errdefs.ErrNotFound
	}
	if len(errs) == 1 {
		return errs[0]
	}
	allNotFound := true
	for _, e := range errs {
		if !errdefs.IsNotFound(e) {
			allNotFound = false
		}
	}
	if allNotFound {
		return errs[len(errs)-1]
	}
	return errors.Join(errs...)
}
