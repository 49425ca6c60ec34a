package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/core/transfer"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
)

// store puts img into the namespace of ctx as an import would: blobs,
// child labels, and a record named name.
func (e *env) store(ctx context.Context, img *testimages.Image, name string) {
	e.t.Helper()
	cs := e.db.ContentStore()
	err := img.Walk(func(desc ocispec.Descriptor, data []byte) error {
		if err := content.WriteBlob(ctx, cs, "test-"+desc.Digest.Encoded(), bytes.NewReader(data), desc); err != nil && !errdefs.IsAlreadyExists(err) {
			return err
		}
		children, err := testimages.Children(desc, data)
		if err != nil || len(children) == 0 {
			return err
		}
		return images.SetChildGCLabels(ctx, cs, desc, children)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.Images().Create(ctx, images.Image{Name: name, Target: img.Target}); err != nil {
		e.t.Fatal(err)
	}
}

// fetchBack pulls ref into a scratch store and returns its platform
// manifest.
func fetchBack(t *testing.T, ref string) (*remotes.Image, ocispec.Manifest) {
	t.Helper()
	dst, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res, err := remotes.NewResolver(remotes.Options{}).Fetch(ctxIn(t, "check"), ref, dst, remotes.FetchOptions{})
	if err != nil {
		t.Fatalf("fetch back %s: %v", ref, err)
	}
	return res, res.Manifests[0].Manifest
}

func TestPushRoundTripKeepsDigests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := buildImage(t, testimages.MultiPlatform)
	reg := registry.Start(t)
	ctx := ctxIn(t, "test")
	e.store(ctx, img, "local/multi:1")

	var ev events
	res, err := e.engine.Push(ctx, transfer.PushRequest{Name: "local/multi:1", Ref: reg.Host + "/multi:1", Progress: ev.add})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if res.Target.Digest != img.Target.Digest {
		t.Errorf("pushed %s, the image is %s", res.Target.Digest, img.Target.Digest)
	}
	got, _ := fetchBack(t, reg.Host+"/multi:1")
	if got.Target.Digest != img.Target.Digest {
		t.Errorf("registry serves %s, pushed %s", got.Target.Digest, img.Target.Digest)
	}
	r, _ := img.Resolve("")
	l := r.Manifest.Layers[0]
	if evs := ev.of(transfer.RefKey(l)); len(evs) < 2 || evs[0] != transfer.EventWaiting || evs[len(evs)-1] != transfer.EventComplete {
		t.Errorf("layer %s push events %v", l.Digest, evs)
	}

	// One platform of the index, pushed as a single-platform image.
	arm := platforms.MustParse("linux/arm64")
	res, err = e.engine.Push(ctx, transfer.PushRequest{Name: "local/multi:1", Ref: reg.Host + "/arm:1", Platforms: []ocispec.Platform{arm}})
	if err != nil {
		t.Fatalf("push one platform: %v", err)
	}
	want, _ := img.Resolve("linux/arm64")
	if res.Target.Digest != want.Descriptor.Digest || !images.IsManifestType(res.Target.MediaType) {
		t.Errorf("pushed %s (%s), want the arm64 manifest %s", res.Target.Digest, res.Target.MediaType, want.Descriptor.Digest)
	}

	// Without one platform's layer, the whole index cannot be pushed,
	// and the error says what to do.
	v7, _ := img.Resolve("linux/arm/v7")
	if err := e.db.ContentStore().Delete(ctx, v7.Manifest.Layers[0].Digest); err != nil {
		t.Fatal(err)
	}
	_, err = e.engine.Push(ctx, transfer.PushRequest{Name: "local/multi:1", Ref: reg.Host + "/partial:1"})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "push one platform") {
		t.Errorf("push of an index missing a platform's layer: %v", err)
	}

	_, err = e.engine.Push(ctx, transfer.PushRequest{Name: "local/none:1", Ref: reg.Host + "/none:1"})
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("push of a missing image: %v", err)
	}
}

// An image with uncompressed layers is pushed with gzip layers; the
// compressed blob is made once, recorded both ways, and reused.
func TestPushCompressesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := buildImage(t, testimages.MultiLayer, testimages.WithCompression(testimages.Uncompressed))
	reg := registry.Start(t)
	proxy := registry.NewProxy(t, reg)
	ctx := ctxIn(t, "test")
	e.store(ctx, img, "local/plain:1")

	res, err := e.engine.Push(ctx, transfer.PushRequest{Name: "local/plain:1", Ref: proxy.Host + "/plain:1"})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if res.Target.Digest == img.Target.Digest {
		t.Fatal("pushed the uncompressed manifest as it is")
	}
	_, m := fetchBack(t, proxy.Host+"/plain:1")
	orig, _ := img.Resolve("")
	cs := e.db.ContentStore()
	compressed := map[digest.Digest]digest.Digest{}
	for i, l := range m.Layers {
		if l.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("pushed layer %d has media type %s", i, l.MediaType)
		}
		plain := orig.Manifest.Layers[i].Digest
		info, err := cs.Info(ctx, plain)
		if err != nil {
			t.Fatal(err)
		}
		if info.Labels[transfer.LabelCompressedGzip] != l.Digest.String() {
			t.Errorf("layer %s labels %v, want %s=%s", plain, info.Labels, transfer.LabelCompressedGzip, l.Digest)
		}
		cinfo, err := cs.Info(ctx, l.Digest)
		if err != nil {
			t.Fatalf("compressed blob %s not kept: %v", l.Digest, err)
		}
		if cinfo.Labels[diff.LabelUncompressed] != plain.String() {
			t.Errorf("compressed blob %s labels %v, want %s=%s", l.Digest, cinfo.Labels, diff.LabelUncompressed, plain)
		}
		compressed[plain] = l.Digest
	}
	if m.Config.Digest != orig.Manifest.Config.Digest {
		t.Errorf("config changed: %s, was %s", m.Config.Digest, orig.Manifest.Config.Digest)
	}

	// The compressed blobs outlive the push: the layer's label keeps them.
	e.gc(ctx)
	for plain, c := range compressed {
		if _, err := cs.Info(ctx, c); err != nil {
			t.Errorf("compressed form %s of %s collected: %v", c, plain, err)
		}
	}

	// A second push sends nothing new and compresses nothing.
	proxy.Reset()
	var ev events
	res2, err := e.engine.Push(ctx, transfer.PushRequest{Name: "local/plain:1", Ref: proxy.Host + "/plain:2", Progress: ev.add})
	if err != nil {
		t.Fatalf("second push: %v", err)
	}
	if res2.Target.Digest != res.Target.Digest {
		t.Errorf("second push made %s, first %s", res2.Target.Digest, res.Target.Digest)
	}
	for _, p := range ev.list {
		if p.Event == transfer.EventCompressing {
			t.Errorf("second push compressed %s again", p.Name)
		}
	}
	uploads := proxy.CountFunc(func(q registry.Request) bool {
		return q.Method == http.MethodPatch || (q.Method == http.MethodPut && !isManifestPath(q.Path))
	})
	if uploads != 0 {
		t.Errorf("second push uploaded %d blobs", uploads)
	}
}

func isManifestPath(p string) bool { return bytes.Contains([]byte(p), []byte("/manifests/")) }
