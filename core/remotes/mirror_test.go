package remotes_test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestMirrorsDownOriginUsed(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiLayer)
	origin, _ := pushed(t, img, "app:1")
	originProxy := registry.NewProxy(t, origin)
	failing := registry.NewProxy(t, registry.Start(t))
	failing.Fail(http.StatusServiceUnavailable)
	empty := registry.NewProxy(t, registry.Start(t)) // answers 404
	cfg := writeHosts(t, originProxy.Host, fmt.Sprintf(`
[host."http://%s"]
  capabilities = ["pull", "resolve"]
[host."http://%s"]
  capabilities = ["pull", "resolve"]
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, closedPort(t), failing.Host, empty.Host))

	r := remotes.NewResolver(remotes.Options{Hosts: hosts.Options{ConfigDir: cfg}})
	dst := newStore(t)
	res, err := r.Fetch(testContext(t), originProxy.Host+"/app:1", dst, remotes.FetchOptions{})
	if err != nil {
		t.Fatalf("fetch with failing mirrors: %v", err)
	}
	assertPulled(t, dst, img, res)
	if failing.CountFunc(func(q registry.Request) bool { return q.Status == http.StatusServiceUnavailable }) == 0 {
		t.Error("the 5xx mirror was never asked")
	}
	notFound := empty.CountFunc(func(q registry.Request) bool { return q.Status == http.StatusNotFound })
	if notFound == 0 {
		t.Error("the empty mirror was never asked")
	}
	for _, q := range empty.Requests() {
		if q.Query.Get("ns") != originProxy.Host {
			t.Errorf("mirror request %s %s without ns=%s", q.Method, q.Path, originProxy.Host)
		}
	}
	for _, l := range res.Manifests[0].Manifest.Layers {
		if n := blobGETs(originProxy, l.Digest); n != 1 {
			t.Errorf("origin served layer %s %d times, want 1", l.Digest, n)
		}
	}
}

func TestServingMirrorKeepsOriginUntouched(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiLayer)
	origin, _ := pushed(t, img, "app:1")
	mirror, _ := pushed(t, img, "app:1")
	originProxy := registry.NewProxy(t, origin)
	mirrorProxy := registry.NewProxy(t, mirror)

	t.Run("pull-and-resolve", func(t *testing.T) {
		originProxy.Reset()
		cfg := writeHosts(t, originProxy.Host, fmt.Sprintf("[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", mirrorProxy.Host))
		r := remotes.NewResolver(remotes.Options{Hosts: hosts.Options{ConfigDir: cfg}})
		dst := newStore(t)
		res, err := r.Fetch(testContext(t), originProxy.Host+"/app:1", dst, remotes.FetchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		assertPulled(t, dst, img, res)
		if reqs := originProxy.Requests(); len(reqs) != 0 {
			t.Errorf("origin contacted %d times: %+v", len(reqs), reqs[0])
		}
		if len(mirrorProxy.Requests()) == 0 {
			t.Error("mirror not contacted")
		}
	})
	t.Run("pull-only", func(t *testing.T) {
		// A mirror not trusted to resolve: the tag goes to the origin, the
		// content (by digest) comes from the mirror.
		originProxy.Reset()
		cfg := writeHosts(t, originProxy.Host, fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\"]\n", originProxy.Host, mirrorProxy.Host))
		r := remotes.NewResolver(remotes.Options{Hosts: hosts.Options{ConfigDir: cfg}})
		dst := newStore(t)
		res, err := r.Fetch(testContext(t), originProxy.Host+"/app:1", dst, remotes.FetchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		assertPulled(t, dst, img, res)
		reqs := originProxy.Requests()
		if len(reqs) != 1 || reqs[0].Method != http.MethodHead || !strings.HasSuffix(reqs[0].Path, "/manifests/1") {
			t.Errorf("origin requests = %+v, want only the tag resolution", reqs)
		}
	})
}
