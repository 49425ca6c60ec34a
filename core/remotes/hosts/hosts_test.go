package hosts

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func writeHosts(t *testing.T, root, namespace, body string) string {
	t.Helper()
	dir := filepath.Join(root, namespace)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDefaults(t *testing.T) {
	cases := []struct {
		ns       string
		plain    bool
		want     Endpoint
		wantDesc string
	}{
		{"docker.io", false, Endpoint{Scheme: "https", Host: "registry-1.docker.io", Path: "/v2", Capabilities: CapAll}, "docker hub"},
		{"quay.io", false, Endpoint{Scheme: "https", Host: "quay.io", Path: "/v2", Capabilities: CapAll}, "remote"},
		{"quay.io", true, Endpoint{Scheme: "http", Host: "quay.io", Path: "/v2", Capabilities: CapAll}, "plain-http"},
		{"localhost:5000", false, Endpoint{Scheme: "https", Host: "localhost:5000", Path: "/v2", Capabilities: CapAll, HTTPFallback: true}, "localhost"},
		{"127.0.0.9:5000", false, Endpoint{Scheme: "https", Host: "127.0.0.9:5000", Path: "/v2", Capabilities: CapAll, HTTPFallback: true}, "loopback v4"},
		{"[::1]:5000", false, Endpoint{Scheme: "https", Host: "[::1]:5000", Path: "/v2", Capabilities: CapAll, HTTPFallback: true}, "loopback v6"},
		{"127.0.0.1:5000", true, Endpoint{Scheme: "http", Host: "127.0.0.1:5000", Path: "/v2", Capabilities: CapAll}, "loopback plain"},
	}
	for _, tc := range cases {
		// A config dir without a folder for the namespace gives defaults too.
		for _, dir := range []string{"", t.TempDir()} {
			eps, err := Lookup(Options{ConfigDir: dir, PlainHTTP: tc.plain}, tc.ns)
			if err != nil {
				t.Fatalf("%s: %v", tc.wantDesc, err)
			}
			if len(eps) != 1 || !reflect.DeepEqual(eps[0], tc.want) {
				t.Errorf("%s: Lookup(%q) = %+v, want [%+v]", tc.wantDesc, tc.ns, eps, tc.want)
			}
		}
	}
}

func TestMirrorsInFileOrder(t *testing.T) {
	root := t.TempDir()
	dir := writeHosts(t, root, "docker.io", `
server = "https://registry-1.docker.io"

[host."https://zeta.mirror"]
  capabilities = ["pull"]
  ca = "zeta.crt"
  skip_verify = true
  [host."https://zeta.mirror".header]
    x-one = "1"
    x-many = ["a", "b"]

[host."http://alpha.mirror:8080/us"]
  capabilities = ["pull", "resolve"]

[host."https://mid.mirror/v2/upstream"]
  override_path = true
  ca = ["/abs/one.pem", "rel/two.pem"]
  client = [["c.cert", "c.key"], ["both.pem", ""]]
  dial_timeout = "2s"

[host."http://tls.mirror:5000"]
  client = "single.pem"
`)
	eps, err := Lookup(Options{ConfigDir: root}, "docker.io")
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, e := range eps {
		urls = append(urls, e.URL())
	}
	wantURLs := []string{
		"https://zeta.mirror/v2",
		"http://alpha.mirror:8080/us/v2",
		"https://mid.mirror/v2/upstream",
		"https://tls.mirror:5000/v2",
		"https://registry-1.docker.io/v2",
	}
	if !reflect.DeepEqual(urls, wantURLs) {
		t.Fatalf("order = %v, want %v", urls, wantURLs)
	}
	zeta, alpha, mid, tlsm, origin := eps[0], eps[1], eps[2], eps[3], eps[4]
	if zeta.Capabilities != CapPull || !zeta.SkipVerify || !zeta.Mirror {
		t.Errorf("zeta = %+v", zeta)
	}
	if !reflect.DeepEqual(zeta.CACerts, []string{filepath.Join(dir, "zeta.crt")}) {
		t.Errorf("zeta ca = %v", zeta.CACerts)
	}
	if zeta.Header.Get("X-One") != "1" || !reflect.DeepEqual(zeta.Header.Values("X-Many"), []string{"a", "b"}) {
		t.Errorf("zeta header = %v", zeta.Header)
	}
	if alpha.Capabilities != CapPull|CapResolve || alpha.Scheme != "http" || alpha.HTTPFallback {
		t.Errorf("alpha = %+v", alpha)
	}
	if !reflect.DeepEqual(mid.CACerts, []string{"/abs/one.pem", filepath.Join(dir, "rel/two.pem")}) {
		t.Errorf("mid ca = %v", mid.CACerts)
	}
	wantPairs := [][2]string{{filepath.Join(dir, "c.cert"), filepath.Join(dir, "c.key")}, {filepath.Join(dir, "both.pem"), ""}}
	if !reflect.DeepEqual(mid.ClientCerts, wantPairs) || mid.DialTimeout != 2*time.Second {
		t.Errorf("mid = %+v", mid)
	}
	// http:// with TLS settings is tried as HTTPS first.
	if tlsm.Scheme != "https" || !tlsm.HTTPFallback || len(tlsm.ClientCerts) != 1 {
		t.Errorf("tls mirror = %+v", tlsm)
	}
	if origin.Mirror || origin.Capabilities != CapAll {
		t.Errorf("origin = %+v", origin)
	}

	pull := Filter(eps, CapPull)
	if len(pull) != 5 {
		t.Errorf("pull endpoints = %d, want 5", len(pull))
	}
	resolve := Filter(eps, CapResolve)
	if len(resolve) != 4 || resolve[0].Host != "alpha.mirror:8080" {
		t.Errorf("resolve endpoints = %+v", resolve)
	}
	if push := Filter(eps, CapPush); len(push) != 3 || push[2].Host != "registry-1.docker.io" {
		t.Errorf("push endpoints = %+v", push)
	}
}

func TestServerDefaultsAndFolders(t *testing.T) {
	root := t.TempDir()
	writeHosts(t, root, "_default", `server = "mirror.example.com"`+"\n")
	writeHosts(t, root, "127.0.0.1_5000_", `
[host."http://127.0.0.1:6000"]
  capabilities = ["pull", "resolve"]
`)
	eps, err := Lookup(Options{ConfigDir: root}, "quay.io")
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 || eps[0].URL() != "https://mirror.example.com/v2" {
		t.Errorf("_default server = %+v", eps)
	}
	eps, err = Lookup(Options{ConfigDir: root}, "127.0.0.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 || eps[0].URL() != "http://127.0.0.1:6000/v2" || eps[1].URL() != "https://127.0.0.1:5000/v2" || !eps[1].HTTPFallback {
		t.Errorf("port folder = %+v", eps)
	}
}

func TestCertFilesFallback(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "reg.example:5000")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "client.cert", "client.key", "lone.cert", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eps, err := Lookup(Options{ConfigDir: root}, "reg.example:5000")
	if err != nil {
		t.Fatal(err)
	}
	e := eps[0]
	want := [][2]string{{filepath.Join(dir, "client.cert"), filepath.Join(dir, "client.key")}, {filepath.Join(dir, "lone.cert"), ""}}
	if len(eps) != 1 || e.Host != "reg.example:5000" || e.Capabilities != CapAll ||
		!reflect.DeepEqual(e.CACerts, []string{filepath.Join(dir, "ca.crt")}) || !reflect.DeepEqual(e.ClientCerts, want) {
		t.Errorf("cert files = %+v", eps)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ body, want string }{
		{`[host."https://m"]` + "\n" + `capabilities = ["pul"]`, `host."https://m".capabilities: unknown capability "pul"`},
		{`capabilties = ["pull"]`, "unknown key capabilties (line 1)"},
		{`[host."https://m"]` + "\n" + `skip_verfy = true`, "unknown key host.https://m.skip_verfy (line 2)"},
		{`server = "https://a"` + "\n" + `skip_verify = "yes"`, "line 2"},
		{`server = `, "line 1"},
		{`ca = 5`, "ca: want a path or a list of paths"},
		{`[host."https://m"]` + "\n" + `client = [["a"]]`, `host."https://m".client[0]: want [certificate, key], got 1 items`},
		{`[header]` + "\n" + `x = 1`, "header.x: want a string"},
		{`server = "ftp://a"`, "server: \"ftp://a\": scheme must be http or https"},
		{`dial_timeout = "soon"`, `dial_timeout: "soon" is not a duration`},
	}
	for _, tc := range cases {
		root := t.TempDir()
		dir := writeHosts(t, root, "r.example", tc.body)
		_, err := Lookup(Options{ConfigDir: root}, "r.example")
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: err = %v, want ErrInvalidArgument", tc.body, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, filepath.Join(dir, FileName)) || !strings.Contains(msg, tc.want) {
			t.Errorf("%q: error %q does not name the file and %q", tc.body, msg, tc.want)
		}
	}
}

func TestInlineHostTableOrder(t *testing.T) {
	root := t.TempDir()
	writeHosts(t, root, "r.example", `host = { "https://b" = { capabilities = ["pull"] }, "https://a" = {} }`)
	eps, err := Lookup(Options{ConfigDir: root}, "r.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 3 || eps[0].Host != "b" || eps[1].Host != "a" || eps[1].Capabilities != CapAll {
		t.Errorf("inline hosts = %+v", eps)
	}
}

func TestIsLocalhost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST:80": true, "127.0.0.1": true, "127.1.2.3:5000": true,
		"[::1]:5000": true, "::1": true, "10.0.0.1:5000": false, "docker.io": false, "localhost.example": false,
	} {
		if got := IsLocalhost(host); got != want {
			t.Errorf("IsLocalhost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestTLSConfigErrorsNameFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Endpoint{Host: "r", CACerts: []string{bad}}.TLSConfig()
	if err == nil || !strings.Contains(err.Error(), bad) || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad CA: %v", err)
	}
	missing := filepath.Join(dir, "missing.pem")
	_, err = Endpoint{Host: "r", ClientCerts: [][2]string{{missing, ""}}}.TLSConfig()
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing client cert: %v", err)
	}
	cfg, err := Endpoint{Host: "r", SkipVerify: true}.TLSConfig()
	if err != nil || !cfg.InsecureSkipVerify {
		t.Errorf("skip verify: %+v, %v", cfg, err)
	}
}
