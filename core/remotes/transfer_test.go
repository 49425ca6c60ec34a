package remotes_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestCutTransferResumesWithRange(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.Busybox)
	reg, _ := pushed(t, img, "resume:1")
	proxy := registry.NewProxy(t, reg)
	layer := layersOf(t, img)[0]
	proxy.CutOnce(layer.Digest.String())

	dst := newStore(t)
	r := remotes.NewResolver(remotes.Options{})
	res, err := r.Fetch(testContext(t), proxy.Host+"/resume:1", dst, remotes.FetchOptions{})
	if err != nil {
		t.Fatalf("fetch after a cut transfer: %v", err)
	}
	assertPulled(t, dst, img, res)

	var gets []registry.Request
	for _, q := range proxy.Requests() {
		if q.Method == http.MethodGet && strings.HasSuffix(q.Path, "/blobs/"+layer.Digest.String()) {
			gets = append(gets, q)
		}
	}
	if len(gets) != 2 {
		t.Fatalf("layer fetched %d times, want the cut transfer and one resume", len(gets))
	}
	if rng := gets[0].Header.Get("Range"); rng != "" {
		t.Errorf("first request had Range %q", rng)
	}
	rng := gets[1].Header.Get("Range")
	start, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"), 10, 64)
	if err != nil || start <= 0 || start >= layer.Size {
		t.Fatalf("resume Range = %q, want bytes=N- with 0 < N < %d", rng, layer.Size)
	}
	if gets[1].Status != http.StatusPartialContent {
		t.Errorf("resume answered %d, want 206", gets[1].Status)
	}
}

func TestCorruptBlobIsNotCommitted(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.Busybox)
	reg, _ := pushed(t, img, "corrupt:1")
	proxy := registry.NewProxy(t, reg)
	layer := layersOf(t, img)[0]
	proxy.Corrupt(layer.Digest.String())

	dst := newStore(t)
	ctx := testContext(t)
	_, err := remotes.NewResolver(remotes.Options{}).Fetch(ctx, proxy.Host+"/corrupt:1", dst, remotes.FetchOptions{})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), layer.Digest.String()) {
		t.Fatalf("corrupted layer: %v, want a failed precondition naming %s", err, layer.Digest)
	}
	if _, err := dst.Info(ctx, layer.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("corrupted layer committed: %v", err)
	}
	statuses, err := dst.ListStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range statuses {
		if strings.Contains(st.Ref, layer.Digest.String()) {
			t.Errorf("ingest of the corrupted layer left behind: %+v", st)
		}
	}
	// Corruption is not a transient error: no retry.
	if n := blobGETs(proxy, layer.Digest); n != 1 {
		t.Errorf("corrupted layer requested %d times, want 1", n)
	}
}

func TestConcurrentFetchesCollapse(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiLayer)
	reg, _ := pushed(t, img, "shared:1")
	proxy := registry.NewProxy(t, reg)
	ref := proxy.Host + "/shared:1"
	dst := newStore(t)
	ctx := testContext(t)

	const pulls = 5
	results := make([]*remotes.Image, pulls)
	errs := make([]error, pulls)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range pulls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := remotes.NewResolver(remotes.Options{})
			<-start
			results[i], errs[i] = r.Fetch(ctx, ref, dst, remotes.FetchOptions{})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		assertPulled(t, dst, img, results[i])
	}
	m := results[0].Manifests[0].Manifest
	blobs := append([]digest.Digest{m.Config.Digest}, func() (ds []digest.Digest) {
		for _, l := range m.Layers {
			ds = append(ds, l.Digest)
		}
		return ds
	}()...)
	for _, d := range blobs {
		if n := blobGETs(proxy, d); n != 1 {
			t.Errorf("blob %s fetched %d times by %d concurrent pulls, want 1", d, n, pulls)
		}
	}
	manifestGETs := proxy.CountFunc(func(q registry.Request) bool {
		return q.Method == http.MethodGet && strings.Contains(q.Path, "/manifests/")
	})
	if manifestGETs != 1 {
		t.Errorf("manifest fetched %d times, want 1", manifestGETs)
	}
}
