package remotes_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/core/remotes/auth"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A credential callback is asked only when the registry challenges, and
// its answer authenticates the request.
func TestCredentialFuncAskedOnChallenge(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.Busybox)
	open, ref := pushed(t, img, "open:1")
	var asked atomic.Int64
	ask := func(_ context.Context, host string) (auth.Credential, error) {
		asked.Add(1)
		return auth.Credential{Username: "carol", Password: "secret"}, nil
	}
	if _, err := remotes.NewResolver(remotes.Options{CredentialFunc: ask}).Fetch(testContext(t), ref, newStore(t), remotes.FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("anonymous registry %s: credentials asked %d times", open.Host, n)
	}

	private := registry.Start(t, registry.WithBasicAuth("carol", "secret"))
	pref := private.Host + "/private:1"
	r := remotes.NewResolver(remotes.Options{CredentialFunc: ask})
	if err := r.Push(testContext(t), pref, seedStore(t, img), img.Target, remotes.PushOptions{}); err != nil {
		t.Fatalf("push with asked credentials: %v", err)
	}
	if asked.Load() == 0 {
		t.Error("credentials never asked by a registry requiring them")
	}
	refuse := func(context.Context, string) (auth.Credential, error) {
		return auth.Credential{}, errors.New("client went away")
	}
	_, err := remotes.NewResolver(remotes.Options{CredentialFunc: refuse}).Fetch(testContext(t), pref, newStore(t), remotes.FetchOptions{})
	if err == nil {
		t.Error("fetch succeeded although no credentials could be had")
	}
}

// Request headers reach the registry with every request.
func TestHeaderSentWithEveryRequest(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiLayer)
	reg, _ := pushed(t, img, "hdr:1")
	proxy := registry.NewProxy(t, reg)
	r := remotes.NewResolver(remotes.Options{Header: http.Header{"X-Berth-Test": {"yes"}}, Limits: remotes.NewLimits(1)})
	if _, err := r.Fetch(testContext(t), proxy.Host+"/hdr:1", newStore(t), remotes.FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(proxy.Requests()) == 0 {
		t.Fatal("no request went through the proxy")
	}
	for _, q := range proxy.Requests() {
		if q.Header.Get("X-Berth-Test") != "yes" {
			t.Errorf("%s %s without the request header", q.Method, q.Path)
		}
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	basic := registry.Start(t, registry.WithBasicAuth("dave", "pass1"))
	token := registry.Start(t, registry.WithTLS(), registry.WithTokenAuth("erin", "pass2"))
	open := registry.Start(t)
	tokenHosts := writeHosts(t, token.Host, fmt.Sprintf("server = %q\nca = %q\n", token.URL(), token.CA.CertFile))
	for _, c := range []struct {
		name, host, dir, user, pass string
		ok                          bool
	}{
		{"basic", basic.Host, "", "dave", "pass1", true},
		{"basic wrong password", basic.Host, "", "dave", "nope", false},
		{"token", token.Host, tokenHosts, "erin", "pass2", true},
		{"token wrong password", token.Host, tokenHosts, "erin", "nope", false},
		{"open registry", open.Host, "", "anyone", "anything", true},
	} {
		creds := auth.NewStore()
		if err := creds.Set(c.host, auth.Credential{Username: c.user, Password: c.pass}); err != nil {
			t.Fatal(err)
		}
		r := remotes.NewResolver(remotes.Options{Credentials: creds, Hosts: hosts.Options{ConfigDir: c.dir}})
		err := r.Login(testContext(t), c.host)
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok {
			assertUnauthorized(t, c.name, err, c.host, c.pass)
		}
	}
}

// Blobs take download slots in manifest order, so under a bound of one the
// registry sees config, then layers bottom up.
func TestDownloadsInManifestOrder(t *testing.T) {
	// Not parallel: concurrent fetches of the same blobs share one flight
	// per digest in this process (see collapse), and other tests fetch
	// this image too; a joined flight lets the next blob start early.
	img := buildImage(t, testimages.MultiLayer)
	reg, _ := pushed(t, img, "order:1")
	proxy := registry.NewProxy(t, reg)
	r := remotes.NewResolver(remotes.Options{Limits: remotes.NewLimits(1)})
	if _, err := r.Fetch(testContext(t), proxy.Host+"/order:1", newStore(t), remotes.FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(img.Blobs[img.Target.Digest], &m); err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		want = append(want, d.Digest.String())
	}
	for _, q := range proxy.Requests() {
		if i := strings.LastIndex(q.Path, "/blobs/"); q.Method == http.MethodGet && i >= 0 {
			got = append(got, q.Path[i+len("/blobs/"):])
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("blobs fetched in the order\n%v\nwant\n%v", got, want)
	}
}
