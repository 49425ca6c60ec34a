package registry

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Request is one request the proxy saw.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	// Status is what the client was answered (before any cut).
	Status int
}

// Proxy is a plain-HTTP reverse proxy on 127.0.0.1 in front of a registry
// that records every request and can inject faults: answer everything with
// an error status, cut one blob transfer half way, or corrupt a blob's
// bytes. The registry builds upload URLs from the Host header, which the
// proxy keeps, so pushes through it stay on it.
type Proxy struct {
	// Host is 127.0.0.1:port; URL is http://Host.
	Host string
	URL  string

	mu      sync.Mutex
	reqs    []Request
	status  int
	cut     map[string]bool
	corrupt map[string]bool
}

// NewProxy starts a proxy in front of upstream until the test ends.
func NewProxy(t testing.TB, upstream *Registry) *Proxy {
	t.Helper()
	target, err := url.Parse(upstream.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{cut: map[string]bool{}, corrupt: map[string]bool{}}
	tr := &http.Transport{DisableCompression: true}
	if upstream.CA != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: upstream.CA.Pool()}
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:      tr,
		FlushInterval:  -1,
		ModifyResponse: p.modify,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status := p.failStatus(); status != 0 {
			p.record(r, status)
			http.Error(w, "injected failure", status)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	p.URL = srv.URL
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func (p *Proxy) failStatus() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Fail answers every request with status (e.g. 503) until Fail(0).
func (p *Proxy) Fail(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = status
}

// CutOnce makes the next GET of blob dgst stop after half its body, with
// the connection closed, as a dropped transfer looks to a client.
func (p *Proxy) CutOnce(dgst string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut[dgst] = true
}

// Corrupt flips a byte in the middle of every GET of blob dgst, keeping
// its length and headers.
func (p *Proxy) Corrupt(dgst string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.corrupt[dgst] = true
}

// Requests returns what the proxy has seen, in order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.reqs...)
}

// Count returns how many requests had this method and path.
func (p *Proxy) Count(method, path string) int {
	return p.CountFunc(func(r Request) bool { return r.Method == method && r.Path == path })
}

// CountFunc returns how many requests match.
func (p *Proxy) CountFunc(match func(Request) bool) int {
	n := 0
	for _, r := range p.Requests() {
		if match(r) {
			n++
		}
	}
	return n
}

// Reset forgets the recorded requests.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = nil
}

func (p *Proxy) record(r *http.Request, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs = append(p.reqs, Request{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
		Header: r.Header.Clone(), Status: status,
	})
}

// blobDigest returns the digest of a blob URL path, "" for other paths.
func blobDigest(path string) string {
	i := strings.LastIndex(path, "/blobs/")
	if i < 0 || strings.Contains(path[i+7:], "/") {
		return ""
	}
	return path[i+7:]
}

func (p *Proxy) modify(resp *http.Response) error {
	req := resp.Request
	p.record(req, resp.StatusCode)
	dgst := blobDigest(req.URL.Path)
	if req.Method != http.MethodGet || dgst == "" || resp.StatusCode/100 != 2 || resp.ContentLength <= 0 {
		return nil
	}
	p.mu.Lock()
	cut, corrupt := p.cut[dgst], p.corrupt[dgst]
	delete(p.cut, dgst)
	p.mu.Unlock()
	if corrupt {
		resp.Body = &corruptReader{rc: resp.Body, at: resp.ContentLength / 2}
	}
	if cut {
		resp.Body = &cutReader{rc: resp.Body, left: resp.ContentLength / 2}
	}
	return nil
}

var errCut = errors.New("transfer cut by test proxy")

// cutReader ends with an error after left bytes; the reverse proxy then
// aborts the response, so the client sees a short body.
type cutReader struct {
	rc   io.ReadCloser
	left int64
}

func (c *cutReader) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errCut
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.rc.Read(b)
	c.left -= int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.rc.Close() }

// corruptReader inverts the byte at offset at.
type corruptReader struct {
	rc  io.ReadCloser
	off int64
	at  int64
}

func (c *corruptReader) Read(b []byte) (int, error) {
	n, err := c.rc.Read(b)
	if c.at >= c.off && c.at < c.off+int64(n) {
		b[c.at-c.off] ^= 0xff
	}
	c.off += int64(n)
	return n, err
}

func (c *corruptReader) Close() error { return c.rc.Close() }
