package remotes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/core/remotes/auth"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/containerd/errdefs"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// endpoint is one hosts.Endpoint with the HTTP client that talks to it.
// It is the oras remote.Client of the repositories on that endpoint: it
// maps oras' "scheme://host/v2/…" URLs onto the endpoint's API root and
// adds the configured headers, above the auth client so that challenges
// see the real URL.
type endpoint struct {
	hosts.Endpoint
	// namespace is the registry name of the reference ("docker.io"); a
	// mirror is told it through the ns query parameter.
	namespace string
	auth      *orasauth.Client
	// base is the shared transport without retries or auth, for probes.
	base http.RoundTripper
}

// Do implements oras' remote.Client.
func (e *endpoint) Do(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	e.rewrite(out)
	return e.auth.Do(out)
}

// scheme returns the scheme to use: the configured one, or for a fallback
// endpoint the outcome of probing it once per process with GET /v2/ over
// HTTPS. The probe happens before any oras repository is built, because
// oras checks upload locations against the scheme it was given.
func (e *endpoint) scheme(ctx context.Context) string {
	if !e.HTTPFallback {
		return e.Scheme
	}
	if s, ok := probedSchemes.get(e.Host); ok {
		return s
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.Host+"/v2/", nil)
	if err != nil {
		return e.Scheme
	}
	resp, err := e.base.RoundTrip(req)
	switch {
	case err == nil:
		resp.Body.Close()
		probedSchemes.set(e.Host, "https")
		return "https"
	case speaksPlainHTTP(err):
		probedSchemes.set(e.Host, "http")
		return "http"
	}
	// Unreachable or a TLS failure: keep HTTPS, whose request will report
	// the error (an unknown CA must not be answered with plain HTTP).
	return e.Scheme
}

// rewrite puts the endpoint's API root in place of "/v2" for URLs on the
// endpoint's host (upload Locations the server returns already carry the
// right path), adds configured headers, and names the upstream namespace to
// mirrors.
func (e *endpoint) rewrite(req *http.Request) {
	if req.URL.Host != e.Host {
		return
	}
	if e.Path != "/v2" && !strings.HasPrefix(req.URL.Path, e.Path+"/") {
		if rest, ok := strings.CutPrefix(req.URL.Path, "/v2"); ok {
			req.URL.Path = e.Path + rest
			req.URL.RawPath = ""
		}
	}
	if e.Mirror && e.namespace != "" {
		q := req.URL.Query()
		if q.Get("ns") == "" {
			q.Set("ns", e.namespace)
			req.URL.RawQuery = q.Encode()
		}
	}
	for k, v := range e.Header {
		if req.Header.Get(k) == "" {
			req.Header[k] = append([]string(nil), v...)
		}
	}
}

// speaksPlainHTTP reports the error of a TLS handshake answered by an HTTP
// server. net/http replaces the tls.RecordHeaderError with an error of its
// own that only its text identifies.
func speaksPlainHTTP(err error) bool {
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return strings.HasPrefix(string(rhe.RecordHeader[:]), "HTTP/")
	}
	return strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// schemeMap is a concurrent host → scheme map.
type schemeMap struct {
	mu sync.RWMutex
	m  map[string]string
}

func (s *schemeMap) get(h string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[h]
	return v, ok
}

func (s *schemeMap) set(h, scheme string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[h] = scheme
}

// probedSchemes remembers what fallback endpoints speak, for the process:
// later pulls skip the probe.
var probedSchemes schemeMap

// transports caches base HTTP transports by TLS settings, so connections
// are reused across pulls and resolvers instead of dialled anew each time.
var transports struct {
	mu sync.Mutex
	m  map[string]*http.Transport
}

// baseTransport returns the shared transport for an endpoint's TLS and dial
// settings. The key includes the certificate files' modification times, so
// a rotated CA takes effect without a restart.
func baseTransport(e hosts.Endpoint) (*http.Transport, error) {
	key := transportKey(e)
	transports.mu.Lock()
	defer transports.mu.Unlock()
	if tr, ok := transports.m[key]; ok {
		return tr, nil
	}
	tlsCfg, err := e.TLSConfig()
	if err != nil {
		return nil, err
	}
	dial := e.DialTimeout
	if dial == 0 {
		dial = 30 * time.Second
	}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   dial,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: 5 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		ForceAttemptHTTP2:     true,
		// Blob bytes must arrive as stored: offsets for resumption and the
		// digest are over the raw body.
		DisableCompression: true,
	}
	if transports.m == nil {
		transports.m = map[string]*http.Transport{}
	}
	transports.m[key] = tr
	return tr, nil
}

func transportKey(e hosts.Endpoint) string {
	var b strings.Builder
	fmt.Fprintf(&b, "skip=%v dial=%v", e.SkipVerify, e.DialTimeout)
	stamp := func(f string) {
		fi, err := os.Stat(f)
		if err == nil {
			fmt.Fprintf(&b, " %s@%d", f, fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, " %s@missing", f)
		}
	}
	for _, f := range e.CACerts {
		stamp(f)
	}
	for _, p := range e.ClientCerts {
		stamp(p[0])
		if p[1] != "" {
			stamp(p[1])
		}
	}
	return b.String()
}

// retryPolicy retries transient failures (network timeouts and resets,
// 408, 429, 5xx) on the registry's own server. Mirrors get no retries: a
// failing mirror should hand over to the next endpoint at once.
func retryPolicy(mirror bool) retry.Policy {
	if mirror {
		return &retry.GenericPolicy{Retryable: retry.DefaultPredicate, Backoff: retry.DefaultBackoff, MaxRetry: 0}
	}
	return &retry.GenericPolicy{
		Retryable: retry.DefaultPredicate,
		Backoff:   retry.ExponentialBackoff(200*time.Millisecond, 2, 0.2),
		MinWait:   100 * time.Millisecond,
		MaxWait:   2 * time.Second,
		MaxRetry:  3,
	}
}

// newEndpoint builds the client stack for one endpoint:
// rewrite → oras auth (challenges, token cache) → retry → shared transport.
func (r *Resolver) newEndpoint(he hosts.Endpoint, namespace string) (*endpoint, error) {
	base, err := baseTransport(he)
	if err != nil {
		return nil, err
	}
	policy := retryPolicy(he.Mirror)
	client := &http.Client{Transport: &retry.Transport{Base: base, Policy: func() retry.Policy { return policy }}}
	header := http.Header{}
	for k, v := range r.opts.Header {
		header[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
	}
	header.Set("User-Agent", r.userAgent)
	ac := &orasauth.Client{
		Client: client,
		Header: header,
		Cache:  r.authCache,
	}
	switch {
	case r.opts.CredentialFunc != nil:
		ac.Credential = credentialFunc(r.opts.CredentialFunc)
	case r.opts.Credentials != nil:
		ac.Credential = r.opts.Credentials.CredentialFunc()
	}
	return &endpoint{Endpoint: he, namespace: namespace, auth: ac, base: base}, nil
}

// endpoints returns the clients for the namespace's endpoints that have
// capability want, in the order they are tried.
func (r *Resolver) endpoints(namespace string, want hosts.Capabilities) ([]*endpoint, error) {
	all, err := hosts.Lookup(r.opts.Hosts, namespace)
	if err != nil {
		return nil, err
	}
	var out []*endpoint
	for _, he := range hosts.Filter(all, want) {
		ep, err := r.newEndpoint(he, namespace)
		if err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("registry %s: no endpoint is configured for %s: %w", namespace, want, errdefs.ErrFailedPrecondition)
	}
	return out, nil
}

// credentialFunc adapts a per-host credential callback for oras.
func credentialFunc(fn func(ctx context.Context, host string) (auth.Credential, error)) orasauth.CredentialFunc {
	return func(ctx context.Context, hostport string) (orasauth.Credential, error) {
		c, err := fn(ctx, hostport)
		if err != nil {
			return orasauth.EmptyCredential, fmt.Errorf("credentials for %s: %w", hostport, err)
		}
		return orasauth.Credential{
			Username:     c.Username,
			Password:     c.Password,
			RefreshToken: c.IdentityToken,
			AccessToken:  c.RegistryToken,
		}, nil
	}
}
