package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseDockerConfig(t *testing.T) {
	cfg := fmt.Sprintf(`{
  "auths": {
    "https://index.docker.io/v1/": {"auth": %q},
    "127.0.0.1:5000": {"username": "bob", "password": "p:w"},
    "https://Registry.Example:8443/v2/": {"auth": %q, "identitytoken": "refresh-me"},
    "tok.example": {"registrytoken": "bearer-xyz"}
  },
  "credsStore": "desktop",
  "credHelpers": {"gcr.io": "gcloud"}
}`, b64("alice:s3cret:with:colons"), b64("<token>:"))
	s, err := ParseDockerConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host string
		want Credential
	}{
		{"docker.io", Credential{Username: "alice", Password: "s3cret:with:colons"}},
		{"registry-1.docker.io", Credential{Username: "alice", Password: "s3cret:with:colons"}},
		{"index.docker.io:443", Credential{Username: "alice", Password: "s3cret:with:colons"}},
		{"127.0.0.1:5000", Credential{Username: "bob", Password: "p:w"}},
		{"registry.example:8443", Credential{Username: "<token>", IdentityToken: "refresh-me"}},
		{"tok.example", Credential{RegistryToken: "bearer-xyz"}},
		{"127.0.0.1:5001", Credential{}},
	}
	for _, tc := range cases {
		if got := s.Get(tc.host); got != tc.want {
			t.Errorf("Get(%q) = %#v, want %#v", tc.host, got, tc.want)
		}
	}
	// The oras adapter maps the fields for the challenge flows.
	oc, err := s.CredentialFunc()(context.Background(), "registry.example:8443")
	if err != nil || oc.RefreshToken != "refresh-me" || oc.Username != "<token>" {
		t.Errorf("oras credential = %+v, %v", oc, err)
	}
	oc, _ = s.CredentialFunc()(context.Background(), "tok.example")
	if oc.AccessToken != "bearer-xyz" {
		t.Errorf("oras registry token = %+v", oc)
	}
}

func TestParseDockerConfigErrors(t *testing.T) {
	cases := []struct{ cfg, want string }{
		{`{"auths": {"r.example": {"auth": "%%%"}}}`, `auths."r.example": auth: not valid base64`},
		{`{"auths": {"r.example": {"auth": "` + b64("nocolon") + `"}}}`, "not user:password"},
		{`{"auths": {"": {"username": "u"}}}`, "no registry host"},
		{`{"auths": [}`, "docker config"},
	}
	for _, tc := range cases {
		_, err := ParseDockerConfig([]byte(tc.cfg))
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.cfg, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "nocolon") {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
}

func TestLoadDockerConfigMissing(t *testing.T) {
	s, err := LoadDockerConfig(filepath.Join(t.TempDir(), "config.json"))
	if err != nil || len(s.Hosts()) != 0 {
		t.Fatalf("missing file = %v, %v", s.Hosts(), err)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	c := Credential{Username: "alice", Password: "hunter2", IdentityToken: "idtok", RegistryToken: "regtok"}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("login", "cred", c)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", c, c, c, c)
	for _, secret := range []string{"hunter2", "idtok", "regtok"} {
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q printed: %s", secret, out)
		}
	}
	if !strings.Contains(out, "user=alice") {
		t.Errorf("user name should stay visible: %s", out)
	}
	if (Credential{}).String() != "anonymous" || !(Credential{}).IsEmpty() {
		t.Errorf("empty credential = %q", Credential{}.String())
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://index.docker.io/v1/": "docker.io",
		"registry.hub.docker.com":     "docker.io",
		"http://LOCALHOST:5000/":      "localhost:5000",
		"[::1]:5000":                  "[::1]:5000",
		"quay.io":                     "quay.io",
	} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}
