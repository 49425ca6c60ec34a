// Package auth holds registry credentials as the caller passes them (the
// berth CLI reads them from Docker's config.json and sends them with each
// request) and hands them to the registry client per host. The challenge
// handling itself — anonymous, basic and bearer-token flows with tokens
// cached per scope — is oras-go's auth.Client; this package only answers
// "which credential for this host".
//
// Credentials never appear in logs or errors: Credential's String, GoString
// and LogValue redact the secrets.
package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
)

// Credential is one registry login.
type Credential struct {
	Username string
	Password string
	// IdentityToken is a refresh token for the registry's token server
	// (Docker's "identitytoken"); it is exchanged for access tokens.
	IdentityToken string
	// RegistryToken is a bearer token sent to the registry as it is.
	RegistryToken string
}

// IsEmpty reports an anonymous credential.
func (c Credential) IsEmpty() bool { return c == Credential{} }

// String names the kind of credential and the user, never a secret.
func (c Credential) String() string {
	var parts []string
	if c.Username != "" {
		parts = append(parts, "user="+c.Username)
	}
	if c.Password != "" {
		parts = append(parts, "password=<redacted>")
	}
	if c.IdentityToken != "" {
		parts = append(parts, "identitytoken=<redacted>")
	}
	if c.RegistryToken != "" {
		parts = append(parts, "registrytoken=<redacted>")
	}
	if len(parts) == 0 {
		return "anonymous"
	}
	return strings.Join(parts, " ")
}

// GoString keeps %#v from printing secrets.
func (c Credential) GoString() string { return "auth.Credential{" + c.String() + "}" }

// LogValue keeps slog from printing secrets.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

func (c Credential) oras() orasauth.Credential {
	return orasauth.Credential{
		Username:     c.Username,
		Password:     c.Password,
		RefreshToken: c.IdentityToken,
		AccessToken:  c.RegistryToken,
	}
}

// Store maps registry hosts to credentials. It is safe for concurrent use.
type Store struct {
	mu    sync.RWMutex
	creds map[string]Credential
}

// NewStore returns an empty store (every host anonymous).
func NewStore() *Store { return &Store{creds: map[string]Credential{}} }

// Set records the credential for a host, given as Docker's config.json
// keys are: "host[:port]", a URL such as "https://index.docker.io/v1/", or
// a docker.io alias.
func (s *Store) Set(host string, c Credential) error {
	key := NormalizeHost(host)
	if key == "" {
		return fmt.Errorf("credential for %q: no registry host: %w", host, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creds[key] = c
	return nil
}

// Get returns the credential for host[:port]; anonymous when none is known.
func (s *Store) Get(host string) Credential {
	if s == nil {
		return Credential{}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.creds[NormalizeHost(host)]
}

// Hosts lists the hosts that have a credential.
func (s *Store) Hosts() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.creds))
	for h := range s.creds {
		out = append(out, h)
	}
	return out
}

// CredentialFunc adapts the store for oras-go's auth.Client, which asks by
// the host[:port] a request goes to.
func (s *Store) CredentialFunc() orasauth.CredentialFunc {
	return func(_ context.Context, hostport string) (orasauth.Credential, error) {
		return s.Get(hostport).oras(), nil
	}
}

// dockerHubAliases are the names Docker Hub's credentials are stored under
// and the hosts its API is reached at.
var dockerHubAliases = map[string]bool{
	"docker.io":               true,
	"index.docker.io":         true,
	"registry-1.docker.io":    true,
	"registry.hub.docker.com": true,
}

// NormalizeHost reduces a config.json key or request host to host[:port]
// in lower case, mapping every Docker Hub alias to "docker.io".
func NormalizeHost(key string) string {
	h := strings.TrimSpace(key)
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	h = strings.ToLower(h)
	if dockerHubAliases[strings.TrimSuffix(h, ":443")] {
		return "docker.io"
	}
	return h
}

// dockerConfig is the part of ~/.docker/config.json that holds logins.
type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// ParseDockerConfig reads the "auths" map of a Docker config.json: each
// entry has a base64 "auth" of "user:password", or username and password,
// and optionally an identitytoken or registrytoken. Other keys (credsStore,
// credHelpers, …) are ignored: helpers run on the client side.
func ParseDockerConfig(data []byte) (*Store, error) {
	var cfg dockerConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("docker config: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	s := NewStore()
	for key, a := range cfg.Auths {
		c, err := a.credential()
		if err != nil {
			return nil, fmt.Errorf("docker config: auths.%q: %w", key, err)
		}
		if err := s.Set(key, c); err != nil {
			return nil, fmt.Errorf("docker config: auths.%q: %w", key, err)
		}
	}
	return s, nil
}

// LoadDockerConfig reads a Docker config.json file; a missing file is an
// empty store.
func LoadDockerConfig(path string) (*Store, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return NewStore(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("docker config %s: %w", path, err)
	}
	s, err := ParseDockerConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func (a dockerAuth) credential() (Credential, error) {
	c := Credential{
		Username:      a.Username,
		Password:      a.Password,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	}
	if a.Auth == "" {
		return c, nil
	}
	raw, err := base64.StdEncoding.DecodeString(a.Auth)
	if err != nil {
		// The error text does not include the value: it is a secret.
		return Credential{}, fmt.Errorf("auth: not valid base64: %w", errdefs.ErrInvalidArgument)
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return Credential{}, fmt.Errorf("auth: decoded value is not user:password: %w", errdefs.ErrInvalidArgument)
	}
	c.Username, c.Password = user, pass
	return c, nil
}
