package registry

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func get(t *testing.T, c *http.Client, u string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestPlainAndProxy(t *testing.T) {
	t.Parallel()
	r := Start(t)
	if r.Scheme != "http" || !strings.HasPrefix(r.Host, "127.0.0.1:") {
		t.Fatalf("registry at %s", r.URL())
	}
	p := NewProxy(t, r)
	c := r.HTTPClient()
	if resp := get(t, c, p.URL+"/v2/", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ through proxy = %d", resp.StatusCode)
	}
	if n := p.Count(http.MethodGet, "/v2/"); n != 1 {
		t.Errorf("proxy counted %d GET /v2/", n)
	}
	p.Fail(http.StatusServiceUnavailable)
	if resp := get(t, c, p.URL+"/v2/", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("injected failure = %d", resp.StatusCode)
	}
	p.Fail(0)
	if resp := get(t, c, p.URL+"/v2/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("after Fail(0) = %d", resp.StatusCode)
	}
}

func TestTLSAndBasicAuth(t *testing.T) {
	t.Parallel()
	r := Start(t, WithTLS(), WithBasicAuth("alice", "wonder"))
	if r.Scheme != "https" || r.CA == nil {
		t.Fatalf("registry = %+v", r)
	}
	c := r.HTTPClient()
	if resp := get(t, c, r.URL()+"/v2/", nil); resp.StatusCode != http.StatusUnauthorized ||
		!strings.HasPrefix(resp.Header.Get("Www-Authenticate"), "Basic") {
		t.Fatalf("anonymous = %d %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
	req, _ := http.NewRequest(http.MethodGet, r.URL()+"/v2/", nil)
	req.SetBasicAuth("alice", "wonder")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("basic auth = %d", resp.StatusCode)
	}
	// Without the CA the certificate is refused.
	if _, err := http.Get(r.URL() + "/v2/"); err == nil || !strings.Contains(err.Error(), "x509") {
		t.Errorf("unknown CA: %v", err)
	}
}

func TestTokenAuth(t *testing.T) {
	t.Parallel()
	r := Start(t, WithTokenAuth("bob", "builder"))
	c := r.HTTPClient()
	resp := get(t, c, r.URL()+"/v2/", nil)
	challenge := resp.Header.Get("Www-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(challenge, r.Token.Realm) {
		t.Fatalf("challenge = %d %q", resp.StatusCode, challenge)
	}
	q := url.Values{"service": {tokenService}, "scope": {"repository:team/app:pull,push"}}
	req, _ := http.NewRequest(http.MethodGet, r.Token.Realm+"?"+q.Encode(), nil)
	req.SetBasicAuth("bob", "wrong")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password to token server = %v %v", resp, err)
	}
	req.SetBasicAuth("bob", "builder")
	tr, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Token string }
	if err := json.NewDecoder(tr.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	tr.Body.Close()
	auth := map[string]string{"Authorization": "Bearer " + body.Token}
	if resp := get(t, c, r.URL()+"/v2/", auth); resp.StatusCode != http.StatusOK {
		t.Fatalf("registry refused the signed token: %d", resp.StatusCode)
	}
	if resp := get(t, c, r.URL()+"/v2/team/app/tags/list", auth); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("scoped request = %d, want 404 (authorised, repository unknown)", resp.StatusCode)
	}
	if resp := get(t, c, r.URL()+"/v2/other/app/tags/list", auth); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("request outside the token's scope = %d, want 401", resp.StatusCode)
	}
	if got := r.Token.Scopes(); len(got) != 1 || got[0] != "repository:team/app:pull,push" {
		t.Errorf("scopes = %v", got)
	}
}
