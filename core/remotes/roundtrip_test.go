package remotes_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestPushFetchRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		build func(...testimages.Option) (*testimages.Image, error)
		all   bool
		want  int // manifests pulled
	}{
		{"single-layer", testimages.Busybox, false, 1},
		{"multi-layer", testimages.MultiLayer, false, 1},
		{"multi-platform-host", testimages.MultiPlatform, false, 1},
		{"multi-platform-all", testimages.MultiPlatform, true, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := buildImage(t, tc.build)
			reg := registry.Start(t)
			proxy := registry.NewProxy(t, reg)
			ref := proxy.Host + "/test/" + tc.name + ":v1"
			r := remotes.NewResolver(remotes.Options{})
			ctx := testContext(t)
			src := seedStore(t, img)
			if err := r.Push(ctx, ref, src, img.Target, remotes.PushOptions{}); err != nil {
				t.Fatalf("push: %v", err)
			}
			dst := newStore(t)
			res, err := r.Fetch(ctx, ref, dst, remotes.FetchOptions{AllPlatforms: tc.all})
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			if len(res.Manifests) != tc.want {
				t.Fatalf("pulled %d manifests, want %d", len(res.Manifests), tc.want)
			}
			assertPulled(t, dst, img, res)
			if !tc.all && res.Manifests[0].Descriptor.Platform != nil &&
				!platforms.Default().Match(*res.Manifests[0].Descriptor.Platform) {
				t.Errorf("pulled platform %v", res.Manifests[0].Descriptor.Platform)
			}

			// A second push finds every blob and manifest present and
			// uploads nothing but the tag.
			proxy.Reset()
			if err := r.Push(ctx, ref, src, img.Target, remotes.PushOptions{}); err != nil {
				t.Fatalf("second push: %v", err)
			}
			uploads := proxy.CountFunc(func(q registry.Request) bool {
				return q.Method == http.MethodPost || (q.Method == http.MethodPut && strings.Contains(q.Path, "/blobs/"))
			})
			if uploads != 0 {
				t.Errorf("second push uploaded %d blobs", uploads)
			}
			// And a second pull into the same store fetches no blob.
			proxy.Reset()
			if _, err := r.Fetch(ctx, ref, dst, remotes.FetchOptions{AllPlatforms: tc.all}); err != nil {
				t.Fatalf("second fetch: %v", err)
			}
			if n := proxy.CountFunc(func(q registry.Request) bool { return strings.Contains(q.Path, "/blobs/") }); n != 0 {
				t.Errorf("second fetch requested %d blobs", n)
			}
		})
	}
}

func TestFetchByDigestAndLabels(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiLayer)
	reg, ref := pushed(t, img, "team/app:1")
	r := remotes.NewResolver(remotes.Options{})
	ctx := testContext(t)
	byDigest := reg.Host + "/team/app@" + img.Target.Digest.String()
	name, desc, err := r.Resolve(ctx, byDigest)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != img.Target.Digest || desc.MediaType != ocispec.MediaTypeImageManifest || name.Path != "team/app" {
		t.Fatalf("resolve %s = %v %+v", byDigest, name, desc)
	}
	dst := newStore(t)
	res, err := r.Fetch(ctx, ref, dst, remotes.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifests[0].Manifest
	info, err := dst.Info(ctx, res.Target.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels["containerd.io/gc.ref.content.config"] != m.Config.Digest.String() ||
		info.Labels["containerd.io/gc.ref.content.l.0"] != m.Layers[0].Digest.String() {
		t.Errorf("manifest labels = %v", info.Labels)
	}
	src := remotes.LabelDistributionSource + reg.Host
	for _, l := range m.Layers {
		info, err := dst.Info(ctx, l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if info.Labels[src] != "team/app" {
			t.Errorf("layer %s labels = %v", l.Digest, info.Labels)
		}
	}
}

func TestFetchErrors(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiPlatform)
	reg, ref := pushed(t, img, "multi:latest")
	r := remotes.NewResolver(remotes.Options{})
	ctx := testContext(t)

	_, err := r.Fetch(ctx, reg.Host+"/multi:missing", newStore(t), remotes.FetchOptions{})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), reg.Host) {
		t.Errorf("missing tag: %v", err)
	}
	windows := platforms.Only(ocispec.Platform{OS: "windows", Architecture: "amd64"})
	_, err = r.Fetch(ctx, ref, newStore(t), remotes.FetchOptions{Platforms: windows})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("platform not in index: %v", err)
	}
	if _, err := r.Fetch(ctx, "Bad Ref", newStore(t), remotes.FetchOptions{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad reference: %v", err)
	}
}

func TestLayerHookAndProgress(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiLayer)
	_, ref := pushed(t, img, "hooks:1")
	r := remotes.NewResolver(remotes.Options{MaxConcurrency: 2})
	ctx := testContext(t)
	dst := newStore(t)
	var mu sync.Mutex
	hooked := map[int]ocispec.Descriptor{}
	progress := map[string]int64{}
	opts := remotes.FetchOptions{
		Progress: func(d ocispec.Descriptor, done int64) {
			mu.Lock()
			defer mu.Unlock()
			if done < progress[d.Digest.String()] {
				t.Errorf("progress of %s went back: %d", d.Digest, done)
			}
			progress[d.Digest.String()] = done
		},
		LayerHook: func(ctx context.Context, manifest ocispec.Descriptor, i int, layer ocispec.Descriptor) error {
			// The layer and the config are committed when the hook runs.
			if _, err := dst.Info(ctx, layer.Digest); err != nil {
				return err
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(img.Blobs[manifest.Digest], &m); err != nil {
				return err
			}
			if _, err := dst.Info(ctx, m.Config.Digest); err != nil {
				return errors.New("config not committed before layer hook")
			}
			mu.Lock()
			defer mu.Unlock()
			hooked[i] = layer
			return nil
		},
	}
	res, err := r.Fetch(ctx, ref, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	layers := res.Manifests[0].Manifest.Layers
	if len(hooked) != len(layers) {
		t.Fatalf("hook called for %d of %d layers", len(hooked), len(layers))
	}
	for i, l := range layers {
		if hooked[i].Digest != l.Digest {
			t.Errorf("hook %d got %s, want %s", i, hooked[i].Digest, l.Digest)
		}
		if progress[l.Digest.String()] != l.Size {
			t.Errorf("progress of layer %d ended at %d of %d", i, progress[l.Digest.String()], l.Size)
		}
	}

	// A failing hook fails the pull and names the layer.
	boom := errors.New("unpack failed")
	_, err = r.Fetch(ctx, ref, newStore(t), remotes.FetchOptions{
		LayerHook: func(context.Context, ocispec.Descriptor, int, ocispec.Descriptor) error { return boom },
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "layer") {
		t.Errorf("failing hook: %v", err)
	}
}
