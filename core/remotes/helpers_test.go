package remotes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
	"github.com/berthd/berth/internal/testutil/require"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newStore(t *testing.T) *local.Store {
	t.Helper()
	s, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// buildImage makes a test image from the host's busybox; without busybox
// the test is skipped (failed under CI=true).
func buildImage(t *testing.T, build func(...testimages.Option) (*testimages.Image, error)) *testimages.Image {
	t.Helper()
	img, err := build()
	if errors.Is(err, errdefs.ErrNotFound) {
		require.Missing(t, fmt.Sprintf("%s (apt-get install busybox-static): %v", testimages.BusyboxPath, err))
	}
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// seedStore writes every blob of img into a fresh store.
func seedStore(t *testing.T, img *testimages.Image) *local.Store {
	t.Helper()
	s := newStore(t)
	for d, b := range img.Blobs {
		if err := writeBlob(t, s, d, b); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func writeBlob(t *testing.T, s content.Ingester, d digest.Digest, b []byte) error {
	desc := ocispec.Descriptor{Digest: d, Size: int64(len(b))}
	return content.WriteBlob(testContext(t), s, "seed-"+d.String(), bytes.NewReader(b), desc)
}

// pushed starts a plain registry, pushes img to repo and returns the
// registry and the reference pushed. The resolver has no PlainHTTP option:
// loopback registries get the HTTPS-then-HTTP fallback, which every test
// using this thereby exercises.
func pushed(t *testing.T, img *testimages.Image, repo string) (*registry.Registry, string) {
	t.Helper()
	reg := registry.Start(t)
	ref := reg.Host + "/" + repo
	src := seedStore(t, img)
	if err := remotes.NewResolver(remotes.Options{}).Push(testContext(t), ref, src, img.Target, remotes.PushOptions{}); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return reg, ref
}

// pulledDigests lists every blob a pull result references.
func pulledDigests(res *remotes.Image) []digest.Digest {
	out := []digest.Digest{res.Target.Digest}
	for _, m := range res.Manifests {
		if m.Descriptor.Digest != res.Target.Digest {
			out = append(out, m.Descriptor.Digest)
		}
		out = append(out, m.Manifest.Config.Digest)
		for _, l := range m.Manifest.Layers {
			out = append(out, l.Digest)
		}
	}
	return out
}

// assertPulled checks the store holds each pulled blob byte for byte as img
// has it.
func assertPulled(t *testing.T, store content.Provider, img *testimages.Image, res *remotes.Image) {
	t.Helper()
	if res.Target.Digest != img.Target.Digest {
		t.Fatalf("pulled root %s, pushed %s", res.Target.Digest, img.Target.Digest)
	}
	for _, d := range pulledDigests(res) {
		want, ok := img.Blobs[d]
		if !ok {
			t.Errorf("pulled %s, which the image does not have", d)
			continue
		}
		got, err := content.ReadBlob(testContext(t), store, ocispec.Descriptor{Digest: d, Size: int64(len(want))}, 1<<30)
		if err != nil {
			t.Errorf("blob %s not in store: %v", d, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("blob %s differs", d)
		}
	}
}

// writeHosts writes <root>/<namespace>/hosts.toml and returns root.
func writeHosts(t *testing.T, namespace, body string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, namespace)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, hosts.FileName), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// blobGETs counts GETs of blob d on the proxy.
func blobGETs(p *registry.Proxy, d digest.Digest) int {
	return p.CountFunc(func(r registry.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/blobs/"+d.String())
	})
}

// layersOf returns the layer descriptors of a single-manifest image.
func layersOf(t *testing.T, img *testimages.Image) []ocispec.Descriptor {
	t.Helper()
	var m ocispec.Manifest
	if err := json.Unmarshal(img.Blobs[img.Target.Digest], &m); err != nil {
		t.Fatal(err)
	}
	return m.Layers
}
