package remotes_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	dockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	dockerConfig   = "application/vnd.docker.container.image.v1+json"
	dockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// addJSON stores v in img's blobs and returns its descriptor.
func addJSON(t *testing.T, img *testimages.Image, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(b)
	img.Blobs[d] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// dockerImage re-labels busybox with Docker schema 2 media types under a
// Docker manifest list.
func dockerImage(t *testing.T) *testimages.Image {
	t.Helper()
	oci := buildImage(t, testimages.Busybox)
	var m ocispec.Manifest
	if err := json.Unmarshal(oci.Blobs[oci.Target.Digest], &m); err != nil {
		t.Fatal(err)
	}
	img := &testimages.Image{Blobs: map[digest.Digest][]byte{}}
	m.MediaType = dockerManifest
	m.Config.MediaType = dockerConfig
	img.Blobs[m.Config.Digest] = oci.Blobs[m.Config.Digest]
	for i := range m.Layers {
		m.Layers[i].MediaType = dockerLayer
		img.Blobs[m.Layers[i].Digest] = oci.Blobs[m.Layers[i].Digest]
	}
	md := addJSON(t, img, dockerManifest, m)
	host := platforms.DefaultSpec()
	md.Platform = &host
	img.Target = addJSON(t, img, dockerList, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: dockerList,
		Manifests: []ocispec.Descriptor{md},
	})
	return img
}

func TestDockerSchema2(t *testing.T) {
	t.Parallel()
	img := dockerImage(t)
	reg := registry.Start(t)
	ref := reg.Host + "/docker/busybox:1"
	ctx := testContext(t)
	r := remotes.NewResolver(remotes.Options{})
	if err := r.Push(ctx, ref, seedStore(t, img), img.Target, remotes.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	_, desc, err := r.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != dockerList || desc.Digest != img.Target.Digest {
		t.Fatalf("resolved %+v", desc)
	}
	dst := newStore(t)
	res, err := r.Fetch(ctx, ref, dst, remotes.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertPulled(t, dst, img, res)
	if got := res.Manifests[0].Descriptor.MediaType; got != dockerManifest {
		t.Errorf("manifest media type %q", got)
	}
}

func TestOversizedManifestRefusedBeforeReading(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.Busybox)
	reg, _ := pushed(t, img, "big:small")
	host := platforms.DefaultSpec()
	// An index may claim any size for a manifest it lists; the registry
	// checks only that the digest exists.
	child := img.Target
	child.Size = remotes.MaxManifestSize + 1
	child.Platform = &host
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{child},
	})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, reg.URL()+"/v2/big/manifests/huge", bytes.NewReader(index))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ocispec.MediaTypeImageIndex)
	resp, err := reg.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT index = %d", resp.StatusCode)
	}

	proxy := registry.NewProxy(t, reg)
	dst := newStore(t)
	_, err = remotes.NewResolver(remotes.Options{}).Fetch(testContext(t), proxy.Host+"/big:huge", dst, remotes.FetchOptions{})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "byte limit") || !strings.Contains(err.Error(), child.Digest.String()) {
		t.Fatalf("oversized manifest: %v", err)
	}
	if n := proxy.CountFunc(func(q registry.Request) bool {
		return q.Method == http.MethodGet && strings.HasSuffix(q.Path, "/manifests/"+child.Digest.String())
	}); n != 0 {
		t.Errorf("oversized manifest was requested %d times", n)
	}
}
