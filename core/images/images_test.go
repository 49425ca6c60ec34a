package images_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/integration/testimages"
)

func TestMediaTypePredicates(t *testing.T) {
	t.Parallel()
	type kinds struct{ index, manifest, config, layer, nondist, docker bool }
	for mt, want := range map[string]kinds{
		ocispec.MediaTypeImageIndex:                                    {index: true},
		images.MediaTypeDockerSchema2ManifestList:                      {index: true, docker: true},
		ocispec.MediaTypeImageManifest:                                 {manifest: true},
		images.MediaTypeDockerSchema2Manifest:                          {manifest: true, docker: true},
		ocispec.MediaTypeImageConfig:                                   {config: true},
		images.MediaTypeDockerSchema2Config:                            {config: true, docker: true},
		ocispec.MediaTypeImageLayer:                                    {layer: true},
		ocispec.MediaTypeImageLayerGzip:                                {layer: true},
		ocispec.MediaTypeImageLayerZstd:                                {layer: true},
		images.MediaTypeDockerSchema2Layer:                             {layer: true, docker: true},
		images.MediaTypeDockerSchema2LayerGzip:                         {layer: true, docker: true},
		images.MediaTypeDockerSchema2LayerZstd:                         {layer: true, docker: true},
		images.MediaTypeDockerSchema2LayerForeign:                      {layer: true, nondist: true, docker: true},
		images.MediaTypeDockerSchema2LayerForeignGzip:                  {layer: true, nondist: true, docker: true},
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": {layer: true, nondist: true},
		ocispec.MediaTypeImageManifest + "; charset=utf-8":             {manifest: true},
		"application/vnd.in-toto+json":                                 {},
		images.MediaTypeDockerSchema1Manifest:                          {docker: true},
		"":                                                             {},
	} {
		got := kinds{
			images.IsIndexType(mt), images.IsManifestType(mt), images.IsConfigType(mt),
			images.IsLayerType(mt), images.IsNonDistributable(mt), images.IsDockerType(mt),
		}
		if got != want {
			t.Errorf("%q: got %+v, want %+v", mt, got, want)
		}
	}
	if !images.IsSchema1Type(images.MediaTypeDockerSchema1Manifest) || images.IsSchema1Type(ocispec.MediaTypeImageManifest) {
		t.Error("IsSchema1Type")
	}
	for mt, want := range map[string]string{
		ocispec.MediaTypeImageLayer:                   "",
		ocispec.MediaTypeImageLayerGzip:               "gzip",
		ocispec.MediaTypeImageLayerZstd:               "zstd",
		images.MediaTypeDockerSchema2Layer:            "",
		images.MediaTypeDockerSchema2LayerGzip:        "gzip",
		images.MediaTypeDockerSchema2LayerZstd:        "zstd",
		images.MediaTypeDockerSchema2LayerForeignGzip: "gzip",
	} {
		if got, ok := images.LayerCompression(mt); !ok || got != want {
			t.Errorf("LayerCompression(%q) = %q, %v; want %q", mt, got, ok, want)
		}
	}
	for _, mt := range []string{"application/vnd.oci.image.layer.v1.tar+encrypted", ocispec.MediaTypeImageConfig} {
		if _, ok := images.LayerCompression(mt); ok {
			t.Errorf("LayerCompression(%q) claims to know it", mt)
		}
	}
}

func TestChildren(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	mp := build(t, testimages.MultiPlatform)
	put(t, cs, mp)

	manifests, err := images.Children(ctx, cs, mp.Target)
	if err != nil {
		t.Fatal(err)
	}
	if want := children(t, mp); len(manifests) != len(want) || manifests[0].Digest != want[0].Digest {
		t.Fatalf("index children %v, want %v", manifests, want)
	}
	blobs, err := images.Children(ctx, cs, manifests[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 2 || !images.IsConfigType(blobs[0].MediaType) || !images.IsLayerType(blobs[1].MediaType) {
		t.Fatalf("manifest children %v, want config then layer", blobs)
	}
	// Leaves are not read: a layer that is not even stored has no children.
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("absent"), Size: 6}
	if ch, err := images.Children(ctx, cs, missing); err != nil || ch != nil {
		t.Fatalf("layer children %v, %v", ch, err)
	}
}

func TestReadRefusesOversizeBeforeReading(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	// Not in the store: the size alone must be the reason for refusal.
	huge := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("x"), Size: images.MaxManifestSize + 1}
	for name, read := range map[string]func() error{
		"manifest": func() error { _, err := images.ReadManifest(ctx, cs, huge); return err },
		"index":    func() error { _, err := images.ReadIndex(ctx, cs, huge); return err },
		"config":   func() error { _, err := images.ReadConfig(ctx, cs, huge); return err },
		"children": func() error { _, err := images.Children(ctx, cs, huge); return err },
	} {
		err := read()
		if !errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) {
			t.Errorf("%s: %v, want invalid argument before any read", name, err)
		}
	}

	// A real manifest over the limit is refused too.
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Annotations: map[string]string{"pad": strings.Repeat("x", images.MaxManifestSize)}}
	desc := putJSON(t, cs, ocispec.MediaTypeImageManifest, m)
	if _, err := images.ReadManifest(ctx, cs, desc); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("oversize manifest: %v", err)
	}
}

func TestReadRejectsWrongKinds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	idx := putJSON(t, cs, ocispec.MediaTypeImageIndex, index())
	asManifest := idx
	asManifest.MediaType = ocispec.MediaTypeImageManifest
	if _, err := images.ReadManifest(ctx, cs, asManifest); !errdefs.IsInvalidArgument(err) {
		t.Errorf("index read as manifest: %v", err)
	}
	m := putJSON(t, cs, ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("c"), Size: 1},
	})
	asIndex := m
	asIndex.MediaType = ocispec.MediaTypeImageIndex
	if _, err := images.ReadIndex(ctx, cs, asIndex); !errdefs.IsInvalidArgument(err) {
		t.Errorf("manifest read as index: %v", err)
	}

	bad := putJSON(t, cs, ocispec.MediaTypeImageManifest, map[string]any{"schemaVersion": 2, "layers": "not a list"})
	if _, err := images.ReadManifest(ctx, cs, bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("malformed manifest: %v", err)
	}
	old := putJSON(t, cs, ocispec.MediaTypeImageManifest, map[string]any{"schemaVersion": 1, "mediaType": ocispec.MediaTypeImageManifest})
	if _, err := images.ReadManifest(ctx, cs, old); !errdefs.IsInvalidArgument(err) {
		t.Errorf("schemaVersion 1: %v", err)
	}
	schema1 := putJSON(t, cs, ocispec.MediaTypeImageManifest, map[string]any{"schemaVersion": 1, "fsLayers": []any{map[string]string{"blobSum": "x"}}})
	if _, err := images.ReadManifest(ctx, cs, schema1); !errdefs.IsNotImplemented(err) {
		t.Errorf("schema 1: %v", err)
	}
	badChild := putJSON(t, cs, ocispec.MediaTypeImageIndex, index(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:../../etc", Size: 1}))
	if _, err := images.ReadIndex(ctx, cs, badChild); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "manifest 0") {
		t.Errorf("index with invalid child digest: %v", err)
	}
	badDiff := putJSON(t, cs, ocispec.MediaTypeImageConfig, map[string]any{"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"md5:abc"}}})
	if _, err := images.ReadConfig(ctx, cs, badDiff); !errdefs.IsInvalidArgument(err) {
		t.Errorf("config with invalid diff id: %v", err)
	}
}

func TestResolveManifestPlatforms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	mp := build(t, testimages.MultiPlatform)
	put(t, cs, mp)
	for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		want, err := mp.Resolve(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := images.ResolveManifest(ctx, cs, mp.Target, platforms.OnlyStrict(platforms.MustParse(p)))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if r.Descriptor.Digest != want.Descriptor.Digest || len(r.Indexes) != 1 || r.Indexes[0].Digest != mp.Target.Digest {
			t.Errorf("%s: resolved %s via %v, want %s", p, r.Descriptor.Digest, r.Indexes, want.Descriptor.Digest)
		}
		if r.Manifest.Config.Digest != want.Manifest.Config.Digest {
			t.Errorf("%s: config %s, want %s", p, r.Manifest.Config.Digest, want.Manifest.Config.Digest)
		}
	}
	host, err := mp.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := images.Manifest(ctx, cs, mp.Target, platforms.Default())
	if err != nil || m.Config.Digest != host.Manifest.Config.Digest {
		t.Fatalf("default platform: %v, %v", m.Config.Digest, err)
	}
	_, err = images.ResolveManifest(ctx, cs, mp.Target, platforms.OnlyStrict(platforms.MustParse("linux/s390x")))
	if !errdefs.IsNotFound(err) || !errors.Is(err, images.ErrNoMatch) {
		t.Fatalf("s390x: %v, want not found for want of a match", err)
	}
}

func TestResolveNestedAndFallback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	mp := build(t, testimages.MultiPlatform)
	bb := build(t, testimages.Busybox)
	put(t, cs, mp)
	put(t, cs, bb)
	host := platforms.DefaultStrict()

	// index → index → manifest
	outer := putJSON(t, cs, ocispec.MediaTypeImageIndex, index(mp.Target))
	r, err := images.ResolveManifest(ctx, cs, outer, host)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Indexes) != 2 || r.Indexes[0].Digest != outer.Digest || r.Indexes[1].Digest != mp.Target.Digest {
		t.Errorf("path %v", r.Indexes)
	}

	// A nested index without a match for the host comes first; the search
	// must go on to the next candidate, a manifest without a platform in
	// its descriptor, which is judged by its config.
	var foreign []ocispec.Descriptor
	for _, c := range children(t, mp) {
		if !host.Match(*c.Platform) {
			foreign = append(foreign, c)
		}
	}
	foreignIdx := putJSON(t, cs, ocispec.MediaTypeImageIndex, index(foreign...))
	bare := bb.Target
	bare.Platform = nil
	mixed := putJSON(t, cs, ocispec.MediaTypeImageIndex, index(foreignIdx, bare))
	r, err = images.ResolveManifest(ctx, cs, mixed, host)
	if err != nil {
		t.Fatal(err)
	}
	if r.Descriptor.Digest != bb.Target.Digest || r.Descriptor.Platform == nil || !host.Match(*r.Descriptor.Platform) {
		t.Errorf("resolved %s (%v), want busybox %s with its config's platform", r.Descriptor.Digest, r.Descriptor.Platform, bb.Target.Digest)
	}

	// A root manifest is checked against its config.
	if _, err := images.ResolveManifest(ctx, cs, bare, platforms.OnlyStrict(platforms.MustParse("linux/s390x"))); !errdefs.IsNotFound(err) {
		t.Errorf("root manifest for another platform: %v", err)
	}
	// Unknown root type.
	if _, err := images.ResolveManifest(ctx, cs, ocispec.Descriptor{MediaType: "application/x-foo", Digest: bb.Target.Digest, Size: bb.Target.Size}, host); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown type: %v", err)
	}
	// A missing best match is an error, not a reason to fall back.
	gone := bb.Target
	gone.Digest = digest.FromString("gone")
	if _, err := images.ResolveManifest(ctx, cs, putJSON(t, cs, ocispec.MediaTypeImageIndex, index(gone, bb.Target)), host); !errdefs.IsNotFound(err) || errors.Is(err, images.ErrNoMatch) || !strings.Contains(err.Error(), gone.Digest.String()) {
		t.Errorf("missing best match: %v", err)
	}
}

func TestNestingBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	bb := build(t, testimages.Busybox)
	put(t, cs, bb)
	desc := bb.Target
	for range 20 {
		desc = putJSON(t, cs, ocispec.MediaTypeImageIndex, index(desc))
	}
	if _, err := images.ResolveManifest(ctx, cs, desc, platforms.Default()); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "nest") {
		t.Errorf("deep nesting: %v", err)
	}
}

func TestPlatforms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	mp := build(t, testimages.MultiPlatform)
	bb := build(t, testimages.Busybox)
	put(t, cs, mp)
	put(t, cs, bb)

	attestation := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("att"), Size: 3,
		Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"}}
	bare := bb.Target
	bare.Platform = nil
	// Other platforms' manifests need not be present: only descriptors are read.
	ghost := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("ppc"), Size: 3,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "ppc64le"}}
	idx := putJSON(t, cs, ocispec.MediaTypeImageIndex, index(mp.Target, attestation, bare, ghost))

	got, err := images.Platforms(ctx, cs, idx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, platforms.FormatAll(p))
	}
	host := platforms.FormatAll(platforms.Normalize(platforms.DefaultSpec()))
	want := []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le"}
	if !contains(want, host) {
		want = append(want, host)
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("platforms %v, want %v", names, want)
	}
	single, err := images.Platforms(ctx, cs, bare)
	if err != nil || len(single) != 1 || platforms.FormatAll(single[0]) != host {
		t.Errorf("single manifest platforms %v, %v", single, err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestConfigRootFSChainIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	ml := build(t, testimages.MultiLayer, testimages.WithCompression(testimages.Zstd))
	put(t, cs, ml)
	want, err := ml.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := images.Config(ctx, cs, ml.Target, platforms.Default())
	if err != nil || cfg.Digest != want.Manifest.Config.Digest {
		t.Fatalf("config %s, %v", cfg.Digest, err)
	}
	diffIDs, err := images.RootFS(ctx, cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffIDs) != 4 {
		t.Fatalf("%d diff IDs", len(diffIDs))
	}
	tars, err := ml.LayerTars("")
	if err != nil {
		t.Fatal(err)
	}
	for i, tar := range tars {
		if digest.FromBytes(tar) != diffIDs[i] {
			t.Errorf("diff ID %d is not the digest of the uncompressed layer", i)
		}
	}

	// Independent computation of the chain: sha256 over "<parent> <diff>".
	chain := []string{diffIDs[0].String()}
	for _, d := range diffIDs[1:] {
		sum := sha256.Sum256([]byte(chain[len(chain)-1] + " " + d.String()))
		chain = append(chain, "sha256:"+hex.EncodeToString(sum[:]))
	}
	got := images.ChainIDs(diffIDs)
	for i := range chain {
		if got[i].String() != chain[i] {
			t.Errorf("chain ID %d = %s, want %s", i, got[i], chain[i])
		}
	}
	if images.ChainID(diffIDs).String() != chain[3] || images.ChainID(nil) != "" {
		t.Error("ChainID")
	}
}

func TestSize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	mp := build(t, testimages.MultiPlatform)
	put(t, cs, mp)
	r, err := mp.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	want := mp.Target.Size + r.Descriptor.Size + r.Manifest.Config.Size
	for _, l := range r.Manifest.Layers {
		want += l.Size
	}
	got, err := images.Size(ctx, cs, mp.Target, platforms.Default())
	if err != nil || got != want {
		t.Errorf("size %d, %v; want %d", got, err, want)
	}
}

func TestWalkOrderDedupeAndSkip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	bb := build(t, testimages.Busybox)
	ml := build(t, testimages.MultiLayer)
	put(t, cs, bb)
	put(t, cs, ml)
	// Both images share the busybox layer.
	idx := putJSON(t, cs, ocispec.MediaTypeImageIndex, index(bb.Target, ml.Target))

	var order []digest.Digest
	record := images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		order = append(order, d.Digest)
		return nil, nil
	})
	if err := images.Walk(ctx, images.Handlers(record, images.ChildrenHandler(cs)), idx); err != nil {
		t.Fatal(err)
	}
	bbr, _ := bb.Resolve("")
	mlr, _ := ml.Resolve("")
	want := []digest.Digest{idx.Digest, bb.Target.Digest, bbr.Manifest.Config.Digest, bbr.Manifest.Layers[0].Digest, ml.Target.Digest, mlr.Manifest.Config.Digest}
	for _, l := range mlr.Manifest.Layers[1:] { // layer 0 is busybox's, seen already
		want = append(want, l.Digest)
	}
	if len(order) != len(want) {
		t.Fatalf("visited %d descriptors, want %d", len(order), len(want))
	}
	for i := range want {
		if order[i] != want[i] {
			t.Errorf("visit %d: %s, want %s", i, order[i], want[i])
		}
	}

	order = nil
	skipManifests := images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if images.IsManifestType(d.MediaType) {
			return nil, images.ErrSkipDesc
		}
		return nil, nil
	})
	if err := images.Walk(ctx, images.Handlers(record, skipManifests, images.ChildrenHandler(cs)), idx); err != nil {
		t.Fatal(err)
	}
	if len(order) != 3 {
		t.Errorf("with manifests skipped visited %d, want index and two manifests", len(order))
	}

	boom := errors.New("boom")
	fail := images.HandlerFunc(func(context.Context, ocispec.Descriptor) ([]ocispec.Descriptor, error) { return nil, boom })
	if err := images.Walk(ctx, fail, idx); !errors.Is(err, boom) {
		t.Errorf("walk error %v", err)
	}
}

func TestHandlersStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := ocispec.Descriptor{Digest: digest.FromString("a")}
	b := ocispec.Descriptor{Digest: digest.FromString("b")}
	called := false
	h := images.Handlers(
		images.HandlerFunc(func(context.Context, ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			return []ocispec.Descriptor{a}, nil
		}),
		images.HandlerFunc(func(context.Context, ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			return nil, images.ErrStopHandler
		}),
		images.HandlerFunc(func(context.Context, ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			called = true
			return nil, nil
		}),
	)
	ch, err := h.Handle(ctx, b)
	if err != nil || len(ch) != 1 || ch[0].Digest != a.Digest || called {
		t.Errorf("children %v, err %v, later handler called %v", ch, err, called)
	}
}

// TestDispatchBound checks that Dispatch runs handlers concurrently up to
// its limit and never beyond it: the first two leaves wait for each other,
// which only completes if two handlers run at once.
func TestDispatchBound(t *testing.T) {
	t.Parallel()
	const limit = 2
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var leaves []ocispec.Descriptor
	for i := range 8 {
		leaves = append(leaves, ocispec.Descriptor{MediaType: "leaf", Digest: digest.FromString(strings.Repeat("l", i+1))})
	}
	root := ocispec.Descriptor{MediaType: "root", Digest: digest.FromString("root")}
	var inFlight, peak, handled atomic.Int32
	both := make(chan struct{})
	var once sync.Once
	h := images.HandlerFunc(func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		handled.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if d.MediaType == "root" {
			// Duplicates are handled once.
			return append(leaves, leaves[0]), nil
		}
		if n == limit {
			once.Do(func() { close(both) })
		}
		select {
		case <-both:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	if err := images.Dispatch(ctx, h, limit, root); err != nil {
		t.Fatal(err)
	}
	if peak.Load() != limit || handled.Load() != int32(1+len(leaves)) {
		t.Errorf("peak concurrency %d (limit %d), handled %d of %d", peak.Load(), limit, handled.Load(), 1+len(leaves))
	}

	boom := errors.New("boom")
	fail := images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if d.MediaType == "root" {
			return leaves, nil
		}
		return nil, boom
	})
	if err := images.Dispatch(ctx, fail, 4, root); !errors.Is(err, boom) {
		t.Errorf("dispatch error %v", err)
	}
}

func TestFilterAndLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	mp := build(t, testimages.MultiPlatform)
	put(t, cs, mp)
	arm64 := platforms.MustParse("linux/arm64")

	got, err := images.FilterPlatforms(images.ChildrenHandler(cs), platforms.NewMatcher(arm64)).Handle(ctx, mp.Target)
	if err != nil || len(got) != 1 || got[0].Platform.Architecture != "arm64" {
		t.Errorf("filtered %v, %v", got, err)
	}
	// arm64 hosts run arm/v7 too: Only(arm64) matches both, arm64 best.
	got, err = images.LimitManifests(images.ChildrenHandler(cs), platforms.Only(arm64), 1).Handle(ctx, mp.Target)
	if err != nil || len(got) != 1 || got[0].Platform.Architecture != "arm64" {
		t.Errorf("limited %v, %v", got, err)
	}
	got, err = images.LimitManifests(images.ChildrenHandler(cs), platforms.Only(arm64), 0).Handle(ctx, mp.Target)
	if err != nil || len(got) != 2 || got[1].Platform.Variant != "v7" {
		t.Errorf("ranked %v, %v", got, err)
	}
}

func TestGCLabels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs := newStore(t)
	mp := build(t, testimages.MultiPlatform)
	put(t, cs, mp)

	h := images.SetChildrenLabels(cs, images.ChildrenHandler(cs))
	if err := images.Walk(ctx, h, mp.Target); err != nil {
		t.Fatal(err)
	}
	info, err := cs.Info(ctx, mp.Target.Digest)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range children(t, mp) {
		if k := images.LabelGCRefManifest + string(rune('0'+i)); info.Labels[k] != m.Digest.String() {
			t.Errorf("index label %s = %q, want %s", k, info.Labels[k], m.Digest)
		}
	}
	r, _ := mp.Resolve("")
	info, err = cs.Info(ctx, r.Descriptor.Digest)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"containerd.io/gc.ref.content.config": r.Manifest.Config.Digest.String(),
		"containerd.io/gc.ref.content.l.0":    r.Manifest.Layers[0].Digest.String(),
	}
	for k, v := range want {
		if info.Labels[k] != v {
			t.Errorf("manifest label %s = %q, want %s", k, info.Labels[k], v)
		}
	}

	// Unknown children get generic numbered keys; numbering is per key.
	parent := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest}
	got := images.ChildGCLabels(parent, []ocispec.Descriptor{
		{MediaType: ocispec.MediaTypeImageConfig, Digest: "sha256:c"},
		{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: "sha256:l0"},
		{MediaType: "application/vnd.in-toto+json", Digest: "sha256:x0"},
		{MediaType: ocispec.MediaTypeImageLayerZstd, Digest: "sha256:l1"},
	})
	wantKeys := map[string]string{
		"containerd.io/gc.ref.content.config": "sha256:c",
		"containerd.io/gc.ref.content.l.0":    "sha256:l0",
		"containerd.io/gc.ref.content.0":      "sha256:x0",
		"containerd.io/gc.ref.content.l.1":    "sha256:l1",
	}
	if len(got) != len(wantKeys) {
		t.Errorf("labels %v", got)
	}
	for k, v := range wantKeys {
		if got[k] != v {
			t.Errorf("label %s = %q, want %q", k, got[k], v)
		}
	}
	if images.ChildGCLabels(parent, nil) != nil {
		t.Error("labels for no children")
	}
}
