package remotes_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/core/remotes/auth"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
	"github.com/containerd/errdefs"
)

func TestTLSWithTestCA(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.Busybox)
	reg := registry.Start(t, registry.WithTLS())
	ref := reg.Host + "/secure/busybox:1"
	ctx := testContext(t)

	// Without the CA, the certificate is refused with the x509 reason and
	// the registry named, and no plain-HTTP fallback hides it.
	for _, opts := range []remotes.Options{{}, {Hosts: hosts.Options{ConfigDir: t.TempDir()}}} {
		_, _, err := remotes.NewResolver(opts).Resolve(ctx, ref)
		if err == nil || !strings.Contains(err.Error(), "x509") || !strings.Contains(err.Error(), reg.Host) {
			t.Fatalf("unknown CA: %v", err)
		}
	}

	cfg := writeHosts(t, reg.Host, fmt.Sprintf("server = %q\nca = %q\n", reg.URL(), reg.CA.CertFile))
	r := remotes.NewResolver(remotes.Options{Hosts: hosts.Options{ConfigDir: cfg}})
	if err := r.Push(ctx, ref, seedStore(t, img), img.Target, remotes.PushOptions{}); err != nil {
		t.Fatalf("push over TLS: %v", err)
	}
	dst := newStore(t)
	res, err := r.Fetch(ctx, ref, dst, remotes.FetchOptions{})
	if err != nil {
		t.Fatalf("fetch over TLS: %v", err)
	}
	assertPulled(t, dst, img, res)
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.Busybox)
	reg := registry.Start(t, registry.WithBasicAuth("alice", "wonderland"))
	ref := reg.Host + "/private/busybox:1"
	ctx := testContext(t)

	good := auth.NewStore()
	if err := good.Set(reg.Host, auth.Credential{Username: "alice", Password: "wonderland"}); err != nil {
		t.Fatal(err)
	}
	r := remotes.NewResolver(remotes.Options{Credentials: good})
	if err := r.Push(ctx, ref, seedStore(t, img), img.Target, remotes.PushOptions{}); err != nil {
		t.Fatalf("push with basic auth: %v", err)
	}
	dst := newStore(t)
	res, err := r.Fetch(ctx, ref, dst, remotes.FetchOptions{})
	if err != nil {
		t.Fatalf("fetch with basic auth: %v", err)
	}
	assertPulled(t, dst, img, res)

	wrong := auth.NewStore()
	if err := wrong.Set("http://"+reg.Host+"/", auth.Credential{Username: "alice", Password: "looking-glass"}); err != nil {
		t.Fatal(err)
	}
	for name, creds := range map[string]*auth.Store{"wrong password": wrong, "anonymous": nil} {
		_, err := remotes.NewResolver(remotes.Options{Credentials: creds}).Fetch(ctx, ref, newStore(t), remotes.FetchOptions{})
		assertUnauthorized(t, name, err, reg.Host, "looking-glass")
	}
}

func TestBearerTokenAuth(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiLayer)
	reg := registry.Start(t, registry.WithTokenAuth("bob", "builder"))
	ref := reg.Host + "/team/multilayer:1"
	ctx := testContext(t)

	creds := auth.NewStore()
	if err := creds.Set(reg.Host, auth.Credential{Username: "bob", Password: "builder"}); err != nil {
		t.Fatal(err)
	}
	r := remotes.NewResolver(remotes.Options{Credentials: creds})
	if err := r.Push(ctx, ref, seedStore(t, img), img.Target, remotes.PushOptions{}); err != nil {
		t.Fatalf("push with token auth: %v", err)
	}
	dst := newStore(t)
	res, err := r.Fetch(ctx, ref, dst, remotes.FetchOptions{})
	if err != nil {
		t.Fatalf("fetch with token auth: %v", err)
	}
	assertPulled(t, dst, img, res)
	// Tokens are cached per scope: far fewer token requests than blobs.
	if n, blobs := reg.Token.Requests.Load(), int64(len(img.Blobs)); n == 0 || n >= blobs {
		t.Errorf("%d token requests for %d blobs", n, blobs)
	}

	wrong := auth.NewStore()
	if err := wrong.Set(reg.Host, auth.Credential{Username: "bob", Password: "wrecker"}); err != nil {
		t.Fatal(err)
	}
	_, err = remotes.NewResolver(remotes.Options{Credentials: wrong}).Fetch(ctx, ref, newStore(t), remotes.FetchOptions{})
	assertUnauthorized(t, "wrong token password", err, reg.Host, "wrecker")
}

func assertUnauthorized(t *testing.T, name string, err error, host, secret string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: fetch succeeded", name)
	case !errors.Is(err, errdefs.ErrUnauthenticated) || !strings.Contains(err.Error(), "unauthorized"):
		t.Errorf("%s: want an unauthorized error, got %v", name, err)
	case !strings.Contains(err.Error(), "registry "+host):
		t.Errorf("%s: error does not name registry %s: %v", name, host, err)
	case strings.Contains(err.Error(), secret):
		t.Errorf("%s: error shows the password: %v", name, err)
	}
}
