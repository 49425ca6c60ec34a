package remotes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestRewrite(t *testing.T) {
	cases := []struct {
		name string
		ep   hosts.Endpoint
		in   string
		want string
	}{
		{"origin unchanged", hosts.Endpoint{Host: "r:5000", Path: "/v2"},
			"https://r:5000/v2/app/blobs/sha256:ab", "https://r:5000/v2/app/blobs/sha256:ab"},
		{"path prefix", hosts.Endpoint{Host: "m", Path: "/us/v2", Mirror: true},
			"https://m/v2/app/manifests/1", "https://m/us/v2/app/manifests/1?ns=docker.io"},
		{"override path", hosts.Endpoint{Host: "m", Path: "/v2/upstream", Mirror: true},
			"https://m/v2/app/manifests/1", "https://m/v2/upstream/app/manifests/1?ns=docker.io"},
		{"upload location already prefixed", hosts.Endpoint{Host: "m", Path: "/us/v2"},
			"https://m/us/v2/app/blobs/uploads/u1?_state=x", "https://m/us/v2/app/blobs/uploads/u1?_state=x"},
		{"other host untouched", hosts.Endpoint{Host: "m", Path: "/us/v2", Mirror: true},
			"https://cdn.example/blob?sig=1", "https://cdn.example/blob?sig=1"},
		{"ns kept", hosts.Endpoint{Host: "m", Path: "/v2", Mirror: true},
			"https://m/v2/app/blobs/d?ns=quay.io", "https://m/v2/app/blobs/d?ns=quay.io"},
	}
	for _, tc := range cases {
		e := &endpoint{Endpoint: tc.ep, namespace: "docker.io"}
		req := httptest.NewRequest(http.MethodGet, tc.in, nil)
		e.rewrite(req)
		if got := req.URL.String(); got != tc.want {
			t.Errorf("%s: %s → %s, want %s", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestRewriteHeaders(t *testing.T) {
	e := &endpoint{Endpoint: hosts.Endpoint{Host: "m", Path: "/v2", Header: http.Header{
		"X-Mirror-Token": {"a", "b"},
		"Authorization":  {"Bearer from-config"},
	}}}
	req := httptest.NewRequest(http.MethodGet, "https://m/v2/", nil)
	req.Header.Set("Authorization", "Bearer from-auth")
	e.rewrite(req)
	if got := req.Header.Values("X-Mirror-Token"); len(got) != 2 || got[1] != "b" {
		t.Errorf("configured header = %v", got)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer from-auth" {
		t.Errorf("configured header replaced the request's own: %q", got)
	}
}

func TestSchemeProbe(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer plain.Close()
	host := strings.TrimPrefix(plain.URL, "http://")
	r := NewResolver(Options{})
	he := hosts.Endpoint{Scheme: "https", Host: host, Path: "/v2", HTTPFallback: true}
	ep, err := r.newEndpoint(he, host)
	if err != nil {
		t.Fatal(err)
	}
	if got := ep.scheme(context.Background()); got != "http" {
		t.Errorf("plain server probed as %q", got)
	}
	// Without fallback the configured scheme stands.
	he.HTTPFallback = false
	if ep, _ = r.newEndpoint(he, host); ep.scheme(context.Background()) != "https" {
		t.Errorf("explicit https changed")
	}
}

func TestErrorKinds(t *testing.T) {
	rhe := tls.RecordHeaderError{}
	copy(rhe.RecordHeader[:], "HTTP/")
	if !speaksPlainHTTP(fmt.Errorf("wrapped: %w", rhe)) || !speaksPlainHTTP(errors.New("http: server gave HTTP response to HTTPS client")) {
		t.Error("plain HTTP answer not recognised")
	}
	if speaksPlainHTTP(errors.New("x509: certificate signed by unknown authority")) {
		t.Error("certificate error taken for plain HTTP")
	}
	for v, want := range map[string]int64{"bytes 100-199/200": 100, "bytes 0-0/1": 0} {
		if got, ok := contentRangeStart(v); !ok || got != want {
			t.Errorf("contentRangeStart(%q) = %d, %v", v, got, ok)
		}
	}
	for _, v := range []string{"", "items 1-2/3", "bytes x-1/2", "bytes 12"} {
		if _, ok := contentRangeStart(v); ok {
			t.Errorf("contentRangeStart(%q) accepted", v)
		}
	}
}

func TestRefKey(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	for mt, want := range map[string]string{
		ocispec.MediaTypeImageIndex:                         "index-",
		mediaTypeDockerManifest:                             "manifest-",
		ocispec.MediaTypeImageConfig:                        "config-",
		ocispec.MediaTypeImageLayerGzip:                     "layer-",
		"application/vnd.example.artifact":                  "unknown-",
		"application/vnd.docker.image.rootfs.diff.tar.gzip": "layer-",
	} {
		if got := refKey(ocispec.Descriptor{MediaType: mt, Digest: digest.Digest(d)}); got != want+d {
			t.Errorf("refKey(%s) = %s", mt, got)
		}
	}
}
