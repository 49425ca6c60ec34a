// Package registry runs Debian's real container registry (docker-registry,
// i.e. distribution v2) for tests: on a random 127.0.0.1 port, with a
// temporary storage folder, in plain HTTP or TLS with a test CA, and with
// htpasswd basic auth or bearer-token auth from a small token server. A
// recording, fault-injecting proxy (see Proxy) can sit in front of it.
//
// Everything started is stopped and removed by t.Cleanup.
package registry

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Binary is the registry program Debian's docker-registry package installs.
const Binary = "docker-registry"

// Registry is one running registry.
type Registry struct {
	// Host is 127.0.0.1:port.
	Host string
	// Scheme is "http" or "https".
	Scheme string
	// CA signed the TLS certificate (TLS) and the token signer (token
	// auth); nil for a plain registry without token auth.
	CA *CA
	// Token is the token server when token auth is on.
	Token *TokenServer
	// Dir is the storage root.
	Dir string

	cmd  *exec.Cmd
	done chan struct{}
	logs *lockedBuffer
}

// URL returns scheme://host.
func (r *Registry) URL() string { return r.Scheme + "://" + r.Host }

type options struct {
	tls   bool
	ca    *CA
	basic map[string]string
	token map[string]string
}

// Option changes how the registry is started.
type Option func(*options)

// WithTLS serves HTTPS with a certificate for 127.0.0.1 issued by a test
// CA (Registry.CA).
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithCA uses ca instead of a fresh CA, so several registries share one.
func WithCA(ca *CA) Option { return func(o *options) { o.ca = ca } }

// WithBasicAuth requires htpasswd basic auth for user with password.
func WithBasicAuth(user, password string) Option {
	return func(o *options) {
		if o.basic == nil {
			o.basic = map[string]string{}
		}
		o.basic[user] = password
	}
}

// WithTokenAuth requires bearer tokens from a token server that accepts
// user with password.
func WithTokenAuth(user, password string) Option {
	return func(o *options) {
		if o.token == nil {
			o.token = map[string]string{}
		}
		o.token[user] = password
	}
}

// Require skips the test when the registry binary is missing, or fails it
// under CI=true, where every dependency must be present.
func Require(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath(Binary)
	if err == nil {
		return path
	}
	msg := "needs " + Binary + " (apt-get install docker-registry)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Start runs a registry until the test ends.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	bin := Require(t)
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.basic != nil && o.token != nil {
		t.Fatal("registry: basic and token auth are exclusive")
	}
	r := &Registry{Scheme: "http", CA: o.ca, Dir: t.TempDir()}
	if o.tls {
		r.Scheme = "https"
	}
	if r.CA == nil && (o.tls || o.token != nil) {
		r.CA = NewCA(t)
	}
	cfgDir := t.TempDir()
	authYAML := r.authConfig(t, cfgDir, &o)
	tlsYAML := ""
	var serverLeaf *Leaf
	if o.tls {
		serverLeaf = r.CA.Issue(t, "127.0.0.1", "localhost")
		tlsYAML = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", serverLeaf.CertFile, serverLeaf.KeyFile)
	}
	if o.token != nil {
		// The token server speaks TLS when the registry does, since a client
		// must not send credentials to a plain-HTTP realm of an HTTPS registry.
		r.Token = startTokenServer(t, r.CA, o.token, serverLeaf)
		authYAML = fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			r.Token.Realm, tokenService, tokenIssuer, r.CA.CertFile)
	}
	var lastErr error
	// A port picked free can be taken before the registry binds it; retry.
	for attempt := 0; attempt < 5; attempt++ {
		host := freePort(t)
		cfg := filepath.Join(cfgDir, "config.yml")
		writeFile(t, cfg, []byte(configYAML(r.Dir, host, tlsYAML, authYAML)))
		if lastErr = r.run(t, bin, cfg, host); lastErr == nil {
			return r
		}
	}
	t.Fatalf("start %s: %v", Binary, lastErr)
	return nil
}

func (r *Registry) authConfig(t testing.TB, dir string, o *options) string {
	if o.basic == nil {
		return ""
	}
	var lines []string
	for user, pass := range o.basic {
		hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("bcrypt: %v", err)
		}
		lines = append(lines, user+":"+string(hash))
	}
	file := filepath.Join(dir, "htpasswd")
	writeFile(t, file, []byte(strings.Join(lines, "\n")+"\n"))
	return fmt.Sprintf("auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n", file)
}

// configYAML is the registry configuration: filesystem storage in dir,
// deletes allowed, quiet logs, no background upload purging.
func configYAML(dir, host, tlsYAML, authYAML string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: berth-test-secret
%s%s`, dir, host, tlsYAML, authYAML)
}

func (r *Registry) run(t testing.TB, bin, cfg, host string) error {
	r.logs = &lockedBuffer{}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	r.cmd, r.done, r.Host = cmd, make(chan struct{}), host
	go func() { cmd.Wait(); close(r.done) }()
	if err := r.waitReady(); err != nil {
		r.stop()
		return fmt.Errorf("%w; registry output:\n%s", err, r.logs.String())
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", Binary, r.logs.String())
		}
	})
	return nil
}

// waitReady polls /v2/ until the registry answers (200, or 401 with auth).
func (r *Registry) waitReady() error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // readiness probe only
	}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			return errors.New("registry exited during start-up")
		default:
		}
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("registry did not answer within 30s")
}

// stop ends the registry: SIGTERM, then SIGKILL if it lingers.
func (r *Registry) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// HTTPClient returns a client trusting the registry's CA, for tests that
// talk to it directly.
func (r *Registry) HTTPClient() *http.Client {
	tr := &http.Transport{}
	if r.CA != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.CA.Pool()}
	}
	return &http.Client{Transport: tr}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Keep the tail only: a long test must not grow this without bound.
	if b.buf.Len() > 1<<20 {
		tail := append([]byte(nil), b.buf.Bytes()[b.buf.Len()-(512<<10):]...)
		b.buf.Reset()
		b.buf.Write(tail)
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
