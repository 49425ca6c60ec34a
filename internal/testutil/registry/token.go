package registry

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Token-server identity the registry is configured to trust.
const (
	tokenService = "berth-test-registry"
	tokenIssuer  = "berth-test-token-issuer"
)

// TokenServer issues the bearer tokens of distribution's token
// authentication: a JWT signed with ES256 whose x5c header carries the
// signing certificate, issued by the CA the registry trusts through its
// rootcertbundle.
type TokenServer struct {
	// Realm is the URL the registry sends clients to for tokens.
	Realm string
	// Requests counts token requests (with valid credentials or not).
	Requests atomic.Int64

	users  map[string]string
	signer *Leaf
	srv    *httptest.Server

	mu     sync.Mutex
	scopes []string
}

// startTokenServer serves tokens for users (name → password) over HTTPS
// when tlsLeaf is set, plain HTTP otherwise.
func startTokenServer(t testing.TB, ca *CA, users map[string]string, tlsLeaf *Leaf) *TokenServer {
	t.Helper()
	ts := &TokenServer{users: users, signer: ca.Issue(t, "token-signer")}
	ts.srv = httptest.NewUnstartedServer(http.HandlerFunc(ts.serve))
	ts.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsLeaf != nil {
		ts.srv.TLS = &tls.Config{Certificates: []tls.Certificate{tlsLeaf.TLSCertificate(t)}}
		ts.srv.StartTLS()
	} else {
		ts.srv.Start()
	}
	t.Cleanup(ts.srv.Close)
	ts.Realm = ts.srv.URL + "/token"
	return ts
}

// Scopes returns every scope requested so far, in order.
func (ts *TokenServer) Scopes() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.scopes...)
}

type accessEntry struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

func (ts *TokenServer) serve(w http.ResponseWriter, r *http.Request) {
	ts.Requests.Add(1)
	user, pass, ok := r.BasicAuth()
	if !ok || ts.users[user] == "" || ts.users[user] != pass {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}`)
		return
	}
	if svc := r.URL.Query().Get("service"); svc != tokenService {
		http.Error(w, "unknown service "+svc, http.StatusBadRequest)
		return
	}
	var access []accessEntry
	for _, scope := range r.URL.Query()["scope"] {
		ts.mu.Lock()
		ts.scopes = append(ts.scopes, scope)
		ts.mu.Unlock()
		if e, ok := parseScope(scope); ok {
			access = append(access, e)
		}
	}
	token, err := ts.sign(user, access)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token":        token,
		"access_token": token,
		"expires_in":   300,
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	})
}

// parseScope splits "repository:name:pull,push"; the name may itself
// contain colons (a port in the registry name never appears, but be safe).
func parseScope(s string) (accessEntry, bool) {
	first := strings.IndexByte(s, ':')
	last := strings.LastIndexByte(s, ':')
	if first < 0 || first == last {
		return accessEntry{}, false
	}
	return accessEntry{Type: s[:first], Name: s[first+1 : last], Actions: strings.Split(s[last+1:], ",")}, true
}

// sign builds the compact JWS: base64url(header).base64url(claims).sig,
// where sig is r||s of an ECDSA P-256 signature over SHA-256, as JWS ES256
// requires.
func (ts *TokenServer) sign(subject string, access []accessEntry) (string, error) {
	now := time.Now()
	header := map[string]any{
		"typ": "JWT",
		"alg": "ES256",
		"x5c": []string{base64.StdEncoding.EncodeToString(ts.signer.Cert.Raw)},
	}
	jti := make([]byte, 12)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims := map[string]any{
		"iss":    tokenIssuer,
		"sub":    subject,
		"aud":    tokenService,
		"exp":    now.Add(5 * time.Minute).Unix(),
		"nbf":    now.Add(-10 * time.Second).Unix(),
		"iat":    now.Unix(),
		"jti":    base64.RawURLEncoding.EncodeToString(jti),
		"access": access,
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(cj)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, ts.signer.Key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
