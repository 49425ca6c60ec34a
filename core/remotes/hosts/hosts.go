// Package hosts reads registry host configuration in containerd's hosts.toml
// layout and turns it into the ordered list of endpoints to contact for a
// registry namespace.
//
// The layout is <config dir>/<namespace>/hosts.toml, where the namespace is
// the registry name of an image reference ("docker.io", "127.0.0.1:5000"),
// with <config dir>/_default/hosts.toml as the fallback for namespaces that
// have no folder of their own. A namespace folder without hosts.toml may hold
// Docker-style certificate files instead: *.crt (CA certificates) and
// *.cert/*.key pairs (client certificates).
//
// The endpoints of a namespace are its [host."…"] entries in file order,
// then the namespace's own server (from `server`, or the namespace itself).
package hosts

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Capabilities are the operations an endpoint may be used for.
type Capabilities uint8

const (
	// CapPull allows fetching content by digest.
	CapPull Capabilities = 1 << iota
	// CapResolve allows resolving a tag to a digest, which means trusting
	// the endpoint with the mapping.
	CapResolve
	// CapPush allows uploading content.
	CapPush

	// CapAll is what a registry's own server (and an entry without a
	// capabilities key) is trusted with.
	CapAll = CapPull | CapResolve | CapPush
)

// Has reports whether all of want are in c.
func (c Capabilities) Has(want Capabilities) bool { return c&want == want }

// String lists the capabilities as in hosts.toml.
func (c Capabilities) String() string {
	var names []string
	for _, n := range capabilityNames {
		if c.Has(n.cap) {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

var capabilityNames = []struct {
	name string
	cap  Capabilities
}{{"pull", CapPull}, {"resolve", CapResolve}, {"push", CapPush}}

// Endpoint is one place to send registry API requests for a namespace.
type Endpoint struct {
	// Scheme is "https" or "http".
	Scheme string
	// Host is host[:port].
	Host string
	// Path is the API root: "/v2" (or "<prefix>/v2"), or the literal path
	// of an override_path entry.
	Path string
	// Capabilities limit what the endpoint is used for.
	Capabilities Capabilities
	// Header is sent with every request to this endpoint.
	Header http.Header
	// CACerts are PEM files added to the system roots.
	CACerts []string
	// ClientCerts are certificate/key file pairs; an empty key means the key
	// is in the certificate file.
	ClientCerts [][2]string
	// SkipVerify disables certificate verification.
	SkipVerify bool
	// DialTimeout bounds connection setup; zero means the caller's default.
	DialTimeout time.Duration
	// Mirror is true for [host] entries and false for the namespace's own
	// server, which is always the last endpoint.
	Mirror bool
	// HTTPFallback means: try HTTPS, and when the server answers the TLS
	// handshake in plain HTTP, use HTTP instead. Set for loopback registries
	// without explicit configuration, and for http:// entries that carry TLS
	// settings.
	HTTPFallback bool
}

// URL returns the endpoint's API root, e.g. "https://registry-1.docker.io/v2".
func (e Endpoint) URL() string {
	return e.Scheme + "://" + e.Host + e.Path
}

// Options control how endpoints are derived.
type Options struct {
	// ConfigDir is the root of the hosts.toml tree; empty means no
	// configuration files, only defaults.
	ConfigDir string
	// PlainHTTP makes the namespace's default server use plain HTTP.
	PlainHTTP bool
}

// DefaultDockerHost is the API host of the docker.io namespace.
const DefaultDockerHost = "registry-1.docker.io"

// Lookup returns the endpoints for a registry namespace in the order they
// are tried: configured [host] entries first, the namespace's server last.
func Lookup(opts Options, namespace string) ([]Endpoint, error) {
	if namespace == "" {
		return nil, fmt.Errorf("registry namespace is empty: %w", errdefs.ErrInvalidArgument)
	}
	var cfg *config
	if opts.ConfigDir != "" {
		dir, err := hostDir(opts.ConfigDir, namespace)
		if err != nil {
			return nil, err
		}
		if dir != "" {
			if cfg, err = loadDir(dir); err != nil {
				return nil, err
			}
		}
	}
	if cfg == nil {
		cfg = &config{}
	}
	eps := make([]Endpoint, 0, len(cfg.mirrors)+1)
	for _, m := range cfg.mirrors {
		m.Mirror = true
		eps = append(eps, m)
	}
	return append(eps, originEndpoint(opts, namespace, cfg.server)), nil
}

// Filter returns the endpoints that have all of want, keeping their order.
func Filter(eps []Endpoint, want Capabilities) []Endpoint {
	var out []Endpoint
	for _, e := range eps {
		if e.Capabilities.Has(want) {
			out = append(out, e)
		}
	}
	return out
}

// originEndpoint completes the namespace's own server: explicit settings
// from hosts.toml win; otherwise docker.io maps to its API host, loopback
// registries try HTTPS and fall back to HTTP, and PlainHTTP selects HTTP.
func originEndpoint(opts Options, namespace string, server *Endpoint) Endpoint {
	var e Endpoint
	if server != nil {
		e = *server
	}
	if e.Host != "" {
		return e
	}
	e.Host, e.Path = namespace, "/v2"
	if namespace == "docker.io" {
		e.Host = DefaultDockerHost
	}
	if e.Capabilities == 0 {
		e.Capabilities = CapAll
	}
	switch {
	case opts.PlainHTTP:
		e.Scheme = "http"
	case IsLocalhost(namespace):
		e.Scheme, e.HTTPFallback = "https", true
	default:
		e.Scheme = "https"
	}
	return e
}

// IsLocalhost reports whether host[:port] names the loopback interface:
// "localhost", 127.0.0.0/8 or ::1.
func IsLocalhost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsLoopback()
}

// hostDir finds the folder configuring namespace: its own, its
// "host_port_" spelling (used where ':' is awkward in file names), then
// _default. It returns "" when none exists.
func hostDir(root, namespace string) (string, error) {
	candidates := []string{namespace}
	if i := strings.LastIndexByte(namespace, ':'); i > 0 {
		candidates = append(candidates, namespace[:i]+"_"+namespace[i+1:]+"_")
	}
	candidates = append(candidates, "_default")
	for _, name := range candidates {
		dir := filepath.Join(root, name)
		fi, err := os.Stat(dir)
		if err == nil && fi.IsDir() {
			return dir, nil
		}
		if err != nil && !os.IsNotExist(err) {
			return "", fmt.Errorf("registry hosts folder %s: %w", dir, err)
		}
	}
	return "", nil
}
