package unpack

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/integration/testimages"
)

// TestUnpack unpacks the multi-layer image into overlay and native,
// checks the tree, the snapshots, the labels, and that a second unpack
// reuses everything.
func TestUnpack(t *testing.T) {
	for _, name := range []string{"overlayfs", "native"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newRawEnv(t, name)
			img := multiLayer(t)
			e.ingest(img)
			r, err := img.Resolve("")
			if err != nil {
				t.Fatal(err)
			}
			chain := images.ChainIDs(r.Config.RootFS.DiffIDs)
			u := e.unpacker()
			res, err := u.Unpack(e.ctx, img.Target, name, e.sn)
			if err != nil {
				t.Fatal(err)
			}
			if res.Layers != 4 || res.Applied != 4 || res.ChainID != chain[3] || res.Config.Digest != r.Manifest.Config.Digest {
				t.Fatalf("result %+v, want 4 layers applied, chain ID %s", res, chain[3])
			}
			e.check(res.ChainID, testimages.MultiLayerExpected())
			e.noExtractions()
			snaps := e.snapshots()
			if len(snaps) != 4 {
				t.Fatalf("%d snapshots, want 4: %v", len(snaps), snaps)
			}
			for i, c := range chain {
				info, ok := snaps[c.String()]
				if !ok {
					t.Fatalf("no snapshot for chain ID %d", i)
				}
				if want := ""; i > 0 {
					want = chain[i-1].String()
					if info.Parent != want {
						t.Errorf("snapshot %d has parent %q, want %q", i, info.Parent, want)
					}
				}
				if info.Labels[LabelSnapshotRef] != c.String() {
					t.Errorf("snapshot %d labels %v lack %s", i, info.Labels, LabelSnapshotRef)
				}
				linfo, err := e.store.Info(e.ctx, r.Manifest.Layers[i].Digest)
				if err != nil {
					t.Fatal(err)
				}
				if linfo.Labels[diff.LabelUncompressed] != r.Config.RootFS.DiffIDs[i].String() {
					t.Errorf("layer %d labels %v lack its diff ID", i, linfo.Labels)
				}
			}
			cinfo, err := e.store.Info(e.ctx, r.Manifest.Config.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if got := cinfo.Labels[LabelGCRefSnapshot+name]; got != chain[3].String() {
				t.Errorf("config label %s = %q, want %s", LabelGCRefSnapshot+name, got, chain[3])
			}
			if ok, err := IsUnpacked(e.ctx, e.store, img.Target, e.sn, nil); !ok || err != nil {
				t.Errorf("IsUnpacked = %v, %v", ok, err)
			}

			again, err := u.Unpack(e.ctx, img.Target, name, e.sn)
			if err != nil {
				t.Fatal(err)
			}
			if again.Applied != 0 || again.ChainID != res.ChainID {
				t.Fatalf("second unpack %+v, want nothing applied", again)
			}
			if len(e.snapshots()) != 4 {
				t.Fatal("second unpack changed the snapshots")
			}
		})
	}
}

// TestUnpackSharedBase unpacks busybox, then the multi-layer image built
// on the same base layer: only the three new layers are extracted.
func TestUnpackSharedBase(t *testing.T) {
	e := newRawEnv(t, "overlayfs")
	bb, ml := busybox(t), multiLayer(t)
	e.ingest(bb)
	e.ingest(ml)
	u := e.unpacker()
	res, err := u.Unpack(e.ctx, bb.Target, e.name, e.sn)
	if err != nil || res.Applied != 1 {
		t.Fatalf("busybox: %+v, %v", res, err)
	}
	if ok, _ := IsUnpacked(e.ctx, e.store, ml.Target, e.sn, nil); ok {
		t.Fatal("multilayer reported unpacked before its unpack")
	}
	res, err = u.Unpack(e.ctx, ml.Target, e.name, e.sn)
	if err != nil || res.Applied != 3 || res.Layers != 4 {
		t.Fatalf("multilayer: %+v, %v; want 3 of 4 layers applied", res, err)
	}
	e.check(res.ChainID, testimages.MultiLayerExpected())
}

// TestUnpackConcurrent runs many unpacks of images sharing layers at
// once, through two Unpackers: each chain ID is extracted exactly once.
func TestUnpackConcurrent(t *testing.T) {
	for _, meta := range []bool{false, true} {
		name := "raw"
		if meta {
			name = "metadata"
		}
		t.Run(name, func(t *testing.T) {
			var e *env
			if meta {
				e = newMetaEnv(t)
			} else {
				e = newRawEnv(t, "overlayfs")
			}
			bb, ml := busybox(t), multiLayer(t)
			e.ingest(bb)
			e.ingest(ml)
			us := []*Unpacker{e.unpacker(), e.unpacker()}
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				applied int
				errs    []error
			)
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					target := ml.Target
					if i%2 == 1 {
						target = bb.Target
					}
					res, err := us[i%2].Unpack(e.ctx, target, e.name, e.sn)
					mu.Lock()
					defer mu.Unlock()
					applied += res.Applied
					if err != nil {
						errs = append(errs, err)
					}
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if applied != 4 {
				t.Fatalf("%d layers extracted in total, want each of the 4 chain IDs once", applied)
			}
			e.noExtractions()
			if n := len(e.snapshots()); n != 4 {
				t.Fatalf("%d snapshots, want 4", n)
			}
		})
	}
}

// TestUnpackFailures checks that a wrong diff ID, a corrupt layer and an
// unknown media type fail the unpack with a clear error, leave no
// extraction snapshot and commit nothing for the bad layer.
func TestUnpackFailures(t *testing.T) {
	e := newRawEnv(t, "overlayfs")
	ml := multiLayer(t)
	u := e.unpacker()

	bad := withBadDiffID(t, ml, 2)
	e.ingest(bad)
	_, err := u.Unpack(e.ctx, bad.Target, e.name, e.sn)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("wrong diff ID: error %v, want ErrFailedPrecondition", err)
	}
	t.Logf("wrong diff ID: %v", err)
	e.noExtractions()
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d snapshots after a failure at layer 2, want the 2 good ones", n)
	}

	unknown := withLayerMediaType(t, ml, 3, "application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
	e.ingest(unknown)
	_, err = u.Unpack(e.ctx, unknown.Target, e.name, e.sn)
	if !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Fatalf("encrypted layer: error %v, want ErrNotImplemented", err)
	}
	e.noExtractions()

	// A layer blob that is missing from the store.
	e = newRawEnv(t, "overlayfs")
	u = e.unpacker()
	r, err := ml.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	for d, b := range ml.Blobs {
		if d != r.Manifest.Layers[3].Digest {
			if err := e.put(ocispec.Descriptor{Digest: d, Size: int64(len(b))}, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err = u.Unpack(e.ctx, ml.Target, e.name, e.sn)
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing layer blob: error %v, want ErrNotFound", err)
	}
	e.noExtractions()
	if n := len(e.snapshots()); n != 3 {
		t.Fatalf("%d snapshots, want the 3 layers before the missing one", n)
	}

	if _, err := u.Unpack(e.ctx, ml.Target, "", nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("no snapshotter: error %v, want ErrInvalidArgument", err)
	}
	other := platforms.Only(ocispec.Platform{OS: "linux", Architecture: "s390x"})
	if _, err := u.Unpack(e.ctx, ml.Target, e.name, e.sn, WithPlatform(other)); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("platform without a manifest: error %v, want ErrNotFound", err)
	}
}

// TestUnpackMetadataGC unpacks through core/metadata: the temporary lease
// is gone afterwards, the snapshots survive a collection while the image
// exists and go with it; a second namespace reuses the layers without
// extracting them.
func TestUnpackMetadataGC(t *testing.T) {
	e := newMetaEnv(t)
	ml := multiLayer(t)
	e.ingest(ml)
	u := e.unpacker(WithLeases(e.db.Leases()))
	res, err := u.Unpack(e.ctx, ml.Target, e.name, e.sn)
	if err != nil {
		t.Fatal(err)
	}
	if ls, err := e.db.Leases().List(e.ctx); err != nil || len(ls) != 0 {
		t.Fatalf("leases after unpack: %v, %v", ls, err)
	}
	if _, err := e.db.Images().Create(e.ctx, images.Image{Name: ml.Name, Target: ml.Target}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.GarbageCollect(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.snapshots()); n != 4 {
		t.Fatalf("%d snapshots after GC with the image present, want 4", n)
	}
	e.check(res.ChainID, testimages.MultiLayerExpected())

	// Another namespace: the layers are shared, not extracted again.
	ctx2 := namespaces.WithNamespace(e.ctx, "other")
	e2 := *e
	e2.ctx = ctx2
	e2.ingest(ml)
	res2, err := u.Unpack(ctx2, ml.Target, e.name, e.sn)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Applied != 0 {
		t.Errorf("second namespace extracted %d layers, want them shared", res2.Applied)
	}
	e2.check(res2.ChainID, testimages.MultiLayerExpected())

	if err := e.db.Images().Delete(e.ctx, ml.Name, images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.GarbageCollect(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.snapshots()); n != 0 {
		t.Fatalf("%d snapshots left after the image was deleted", n)
	}
}

// TestUnpackUnderLease keeps the caller's lease: no lease is made and the
// snapshots are attached to the caller's.
func TestUnpackUnderLease(t *testing.T) {
	e := newMetaEnv(t)
	bb := busybox(t)
	e.ingest(bb)
	l, err := e.db.Leases().Create(e.ctx, leases.WithID("mine"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := leases.WithLease(e.ctx, l.ID)
	res, err := e.unpacker(WithLeases(e.db.Leases())).Unpack(ctx, bb.Target, e.name, e.sn)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := e.db.Leases().List(e.ctx)
	if err != nil || len(ls) != 1 {
		t.Fatalf("leases %v, %v; want only the caller's", ls, err)
	}
	rs, err := e.db.Leases().ListResources(e.ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rs {
		found = found || r.ID == res.ChainID.String()
	}
	if !found {
		t.Fatalf("lease resources %v lack snapshot %s", rs, res.ChainID)
	}
	if _, err := e.db.GarbageCollect(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("%d snapshots after GC under the lease, want 1", n)
	}
}

// TestHook feeds layers to a hook in shuffled order from many goroutines,
// as a pull lands them, and checks that Finish finds everything unpacked.
func TestHook(t *testing.T) {
	e := newRawEnv(t, "overlayfs")
	ml := multiLayer(t)
	r, err := ml.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	e.ingest(ml)
	h := e.unpacker().Hook(e.name, e.sn)
	order := rand.Perm(len(r.Manifest.Layers))
	var wg sync.WaitGroup
	errs := make(chan error, len(order))
	for _, i := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- h.Layer(e.ctx, ml.Target, i, r.Manifest.Layers[i])
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	res, err := h.Finish(e.ctx, ml.Target)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 4 {
		t.Fatalf("hook and finish applied %d layers, want 4", res.Applied)
	}
	e.check(res.ChainID, testimages.MultiLayerExpected())
	e.noExtractions()
}

// TestHookGaps announces only some layers, in reverse: nothing can be
// applied before layer 0, then Finish applies the unannounced ones.
func TestHookGaps(t *testing.T) {
	e := newRawEnv(t, "native")
	ml := multiLayer(t)
	r, err := ml.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	e.ingest(ml)
	h := e.unpacker().Hook(e.name, e.sn)
	for _, i := range []int{3, 1} {
		if err := h.Layer(e.ctx, ml.Target, i, r.Manifest.Layers[i]); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.snapshots()); n != 0 {
		t.Fatalf("%d snapshots before layer 0 landed", n)
	}
	if err := h.Layer(e.ctx, ml.Target, 0, r.Manifest.Layers[0]); err != nil {
		t.Fatal(err)
	}
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d snapshots after layers 0, 1 and 3 landed, want 2", n)
	}
	if err := h.Layer(e.ctx, ml.Target, 2, r.Manifest.Layers[0]); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("layer announced with another layer's digest: %v", err)
	}
	res, err := h.Finish(e.ctx, ml.Target)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 4 {
		t.Fatalf("applied %d, want 4", res.Applied)
	}
	e.check(res.ChainID, testimages.MultiLayerExpected())
}

// TestHookOtherPlatform ignores manifests of other platforms, and reports
// a failed layer from the call that applied it and from Finish.
func TestHookOtherPlatform(t *testing.T) {
	e := newRawEnv(t, "native")
	mp, err := testimages.MultiPlatform()
	if err != nil {
		t.Fatalf("build the multi-platform test image (needs busybox-static): %v", err)
	}
	e.ingest(mp)
	var idx ocispec.Index
	if err := json.Unmarshal(mp.Blobs[mp.Target.Digest], &idx); err != nil {
		t.Fatal(err)
	}
	h := e.unpacker().Hook(e.name, e.sn)
	host := platforms.Default()
	for _, m := range idx.Manifests {
		var man ocispec.Manifest
		if err := json.Unmarshal(mp.Blobs[m.Digest], &man); err != nil {
			t.Fatal(err)
		}
		before := len(e.snapshots())
		if err := h.Layer(e.ctx, m, 0, man.Layers[0]); err != nil {
			t.Fatal(err)
		}
		added := len(e.snapshots()) - before
		if want := map[bool]int{true: 1, false: 0}[host.Match(*m.Platform)]; added != want {
			t.Fatalf("layer of the manifest for %s made %d snapshots, want %d", platforms.Format(*m.Platform), added, want)
		}
	}

	bad := withBadDiffID(t, multiLayer(t), 0)
	e.ingest(bad)
	var man ocispec.Manifest
	if err := json.Unmarshal(bad.Blobs[bad.Target.Digest], &man); err != nil {
		t.Fatal(err)
	}
	h2 := e.unpacker().Hook(e.name, e.sn)
	if err := h2.Layer(e.ctx, bad.Target, 0, man.Layers[0]); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("bad layer through the hook: %v", err)
	}
	if _, err := h2.Finish(e.ctx, bad.Target); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Finish after a failed layer: %v", err)
	}
}
