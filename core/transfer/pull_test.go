package transfer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/transfer"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
)

func TestPullUnpacksAndRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := buildImage(t, testimages.MultiLayer)
	reg := registry.Start(t)
	ref := reg.Host + "/app:1"
	push(t, img, ref)

	ctx := ctxIn(t, "test")
	var ev events
	res, err := e.engine.Pull(ctx, transfer.PullRequest{
		Ref:      ref,
		Labels:   map[string]string{"origin": "test"},
		Unpack:   []transfer.UnpackTarget{{}},
		Progress: ev.add,
	})
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if res.Image.Name != ref || res.Image.Target.Digest != img.Target.Digest || !res.Created {
		t.Fatalf("record %+v created=%v, want %s at %s", res.Image, res.Created, ref, img.Target.Digest)
	}
	if res.Image.Labels["origin"] != "test" {
		t.Errorf("record labels %v lack origin=test", res.Image.Labels)
	}
	if len(res.Unpacked) != 1 || res.Unpacked[0].Applied != 4 || res.Unpacked[0].Snapshotter != e.sn {
		t.Fatalf("unpacked %+v, want 4 layers applied into %s", res.Unpacked, e.sn)
	}
	e.checkRootFS(ctx, res.Unpacked[0].ChainID, testimages.MultiLayerExpected())
	if left := e.scratchLeft(); len(left) != 0 {
		t.Errorf("layers inflated ahead left behind: %v", left)
	}

	// Every layer goes waiting → … → complete → extracting → extracted.
	r, _ := img.Resolve("")
	for _, l := range r.Manifest.Layers {
		got := ev.of(transfer.RefKey(l))
		if len(got) < 4 || got[0] != transfer.EventWaiting || got[len(got)-1] != transfer.EventExtracted ||
			!slices.Contains(got, transfer.EventComplete) || !slices.Contains(got, transfer.EventExtracting) {
			t.Errorf("layer %s events %v", l.Digest, got)
		}
		if i, j := slices.Index(got, transfer.EventComplete), slices.Index(got, transfer.EventExtracting); i > j {
			t.Errorf("layer %s extracting before complete: %v", l.Digest, got)
		}
	}
	if got := ev.of(ref); !slices.Equal(got, []string{transfer.EventResolving, transfer.EventResolved, transfer.EventSaved}) {
		t.Errorf("image events %v", got)
	}

	// A second pull finds everything in place and only updates the record.
	res2, err := e.engine.Pull(ctx, transfer.PullRequest{Ref: ref, Unpack: []transfer.UnpackTarget{{}}})
	if err != nil {
		t.Fatalf("second pull: %v", err)
	}
	if res2.Created || res2.Unpacked[0].Applied != 0 || res2.Image.Labels["origin"] != "test" {
		t.Errorf("second pull: created=%v applied=%d labels=%v", res2.Created, res2.Unpacked[0].Applied, res2.Image.Labels)
	}

	// What the pull stored survives garbage collection: the record holds
	// it all, the temporary lease is gone.
	e.gc(ctx)
	if err := e.complete(ctx, res.Image); err != nil {
		t.Fatalf("after GC: %v", err)
	}
	if !e.committed(ctx)[res.Unpacked[0].ChainID.String()] {
		t.Error("unpacked snapshot collected")
	}
	ls, err := e.db.Leases().List(ctx)
	if err != nil || len(ls) != 0 {
		t.Errorf("leases left: %v %v", ls, err)
	}
}

// A second namespace pulling content another already has must label its
// manifests itself, or garbage collection would drop their children once
// the first namespace lets go.
func TestPullIntoSecondNamespaceKeepsChildren(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := buildImage(t, testimages.MultiPlatform)
	reg := registry.Start(t)
	ref := reg.Host + "/multi:1"
	push(t, img, ref)

	a, b := ctxIn(t, "a"), ctxIn(t, "b")
	if _, err := e.engine.Pull(a, transfer.PullRequest{Ref: ref}); err != nil {
		t.Fatal(err)
	}
	res, err := e.engine.Pull(b, transfer.PullRequest{Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.Images().Delete(a, ref); err != nil {
		t.Fatal(err)
	}
	e.gc(b)
	if err := e.complete(b, res.Image); err != nil {
		t.Fatalf("namespace b lost content of its image: %v", err)
	}
	info, err := e.db.ContentStore().Info(b, img.Target.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels[images.LabelGCRefManifest+"0"] == "" {
		t.Errorf("index in namespace b has no child labels: %v", info.Labels)
	}
}

func TestPullAllPlatformsAndOnePlatform(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := buildImage(t, testimages.MultiPlatform)
	reg := registry.Start(t)
	ref := reg.Host + "/multi:1"
	push(t, img, ref)
	ctx := ctxIn(t, "test")

	arm := platforms.MustParse("linux/arm64")
	res, err := e.engine.Pull(ctx, transfer.PullRequest{Ref: ref, Platforms: []ocispec.Platform{arm}, Unpack: []transfer.UnpackTarget{{}}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Resolve("linux/arm64")
	if res.Unpacked[0].Manifest.Digest != want.Descriptor.Digest {
		t.Errorf("unpacked %s, want the arm64 manifest %s", res.Unpacked[0].Manifest.Digest, want.Descriptor.Digest)
	}

	res, err = e.engine.Pull(ctx, transfer.PullRequest{Ref: ref, Name: "all", AllPlatforms: true, Unpack: []transfer.UnpackTarget{{Optional: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		r, _ := img.Resolve(p)
		for _, l := range append(r.Manifest.Layers, r.Manifest.Config) {
			if _, err := e.db.ContentStore().Info(ctx, l.Digest); err != nil {
				t.Errorf("%s blob %s not pulled: %v", p, l.Digest, err)
			}
		}
	}
	if len(res.Unpacked) != 1 {
		t.Errorf("unpacked %+v, want the host platform", res.Unpacked)
	}
}

func TestCorruptBlobFailsPullLeavingNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := buildImage(t, testimages.MultiLayer)
	reg := registry.Start(t)
	proxy := registry.NewProxy(t, reg)
	ref := proxy.Host + "/bad:1"
	push(t, img, reg.Host+"/bad:1")
	r, _ := img.Resolve("")
	bad := r.Manifest.Layers[2]
	proxy.Corrupt(bad.Digest.String())

	ctx := ctxIn(t, "test")
	var ev events
	_, err := e.engine.Pull(ctx, transfer.PullRequest{Ref: ref, Unpack: []transfer.UnpackTarget{{}}, Progress: ev.add})
	if got := ev.of(transfer.RefKey(bad)); slices.Contains(got, transfer.EventComplete) {
		t.Errorf("corrupted layer reported complete: %v", got)
	}
	if err == nil || !strings.Contains(err.Error(), bad.Digest.String()) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("pull of a corrupted blob: %v, want an error naming %s", err, bad.Digest)
	}
	if _, err := e.db.Images().Get(ctx, ref); !errdefs.IsNotFound(err) {
		t.Errorf("image record after a failed pull: %v", err)
	}
	chain := images.ChainIDs(r.Config.RootFS.DiffIDs)
	if e.committed(ctx)[chain[2].String()] {
		t.Errorf("snapshot of the corrupted layer committed")
	}
	if left := e.scratchLeft(); len(left) != 0 {
		t.Errorf("a failed pull left inflated layers: %v", left)
	}
	// Nothing is held once the lease is gone.
	e.gc(ctx)
	if left := e.committed(ctx); len(left) != 0 {
		t.Errorf("snapshots left after GC: %v", left)
	}
	var blobs []string
	e.db.ContentStore().Walk(ctx, func(i content.Info) error {
		blobs = append(blobs, i.Digest.String())
		return nil
	})
	if len(blobs) != 0 {
		t.Errorf("blobs left after GC: %v", blobs)
	}
}

func TestCutTransferResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := buildImage(t, testimages.Busybox)
	reg := registry.Start(t)
	proxy := registry.NewProxy(t, reg)
	push(t, img, reg.Host+"/cut:1")
	r, _ := img.Resolve("")
	layer := r.Manifest.Layers[0]
	proxy.CutOnce(layer.Digest.String())

	ctx := ctxIn(t, "test")
	res, err := e.engine.Pull(ctx, transfer.PullRequest{Ref: proxy.Host + "/cut:1", Unpack: []transfer.UnpackTarget{{}}})
	if err != nil {
		t.Fatalf("pull after a cut: %v", err)
	}
	if n := blobGETs(proxy, layer.Digest); n != 2 {
		t.Errorf("layer fetched %d times, want the cut one and a resume", n)
	}
	e.checkRootFS(ctx, res.Unpacked[0].ChainID, testimages.BusyboxExpected())
}

func TestConcurrentPullsFetchAndUnpackOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := buildImage(t, testimages.MultiLayer)
	reg := registry.Start(t)
	proxy := registry.NewProxy(t, reg)
	push(t, img, reg.Host+"/same:1")
	ctx := ctxIn(t, "test")

	const n = 5
	var wg sync.WaitGroup
	results := make([]*transfer.PullResult, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.engine.Pull(ctx, transfer.PullRequest{
				Ref: proxy.Host + "/same:1", Name: fmt.Sprintf("copy-%d", i), Unpack: []transfer.UnpackTarget{{}},
			})
		}()
	}
	wg.Wait()
	applied := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("pull %d: %v", i, errs[i])
		}
		applied += results[i].Unpacked[0].Applied
	}
	if applied != 4 {
		t.Errorf("%d layers applied over %d pulls of a 4-layer image, want 4", applied, n)
	}
	r, _ := img.Resolve("")
	for _, b := range append(r.Manifest.Layers, r.Manifest.Config) {
		if got := blobGETs(proxy, b.Digest); got != 1 {
			t.Errorf("blob %s fetched %d times, want 1", b.Digest, got)
		}
	}
}

func TestPullErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := registry.Start(t)
	ctx := ctxIn(t, "test")
	for _, c := range []struct {
		ref  string
		want error
	}{
		{reg.Host + "/missing:1", errdefs.ErrNotFound},
		{"not a reference", errdefs.ErrInvalidArgument},
	} {
		_, err := e.engine.Pull(ctx, transfer.PullRequest{Ref: c.ref})
		if !errors.Is(err, c.want) {
			t.Errorf("pull %s: %v, want %v", c.ref, err, c.want)
		}
	}
	if _, err := e.engine.Pull(context.Background(), transfer.PullRequest{Ref: reg.Host + "/x:1"}); err == nil {
		t.Error("pull without a namespace succeeded")
	}
}
