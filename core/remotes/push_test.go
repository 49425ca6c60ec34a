package remotes_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// mounts returns the mount requests (POST …/blobs/uploads/?mount=&from=)
// into repo and how many blob uploads (PUT) went to it.
func mounts(p *registry.Proxy, repo string) (mounted map[string]string, puts int) {
	mounted = map[string]string{}
	for _, q := range p.Requests() {
		if !strings.HasPrefix(q.Path, "/v2/"+repo+"/blobs/uploads/") {
			continue
		}
		switch {
		case q.Method == http.MethodPost && q.Query.Get("mount") != "" && q.Status == http.StatusCreated:
			mounted[q.Query.Get("mount")] = q.Query.Get("from")
		case q.Method == http.MethodPut:
			puts++
		}
	}
	return mounted, puts
}

func TestCrossRepositoryMount(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiLayer)
	reg := registry.Start(t)
	proxy := registry.NewProxy(t, reg)
	ctx := testContext(t)
	r := remotes.NewResolver(remotes.Options{})
	if err := r.Push(ctx, proxy.Host+"/src/app:1", seedStore(t, img), img.Target, remotes.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pull labels the blobs with their source repository...
	pulledStore := newStore(t)
	res, err := r.Fetch(ctx, proxy.Host+"/src/app:1", pulledStore, remotes.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifests[0].Manifest
	blobs := append([]ocispec.Descriptor{m.Config}, m.Layers...)

	// ...so pushing them to another repository of the registry mounts.
	proxy.Reset()
	if err := r.Push(ctx, proxy.Host+"/dst/app:1", pulledStore, res.Target, remotes.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	mounted, puts := mounts(proxy, "dst/app")
	for _, b := range blobs {
		if mounted[b.Digest.String()] != "src/app" {
			t.Errorf("blob %s not mounted from src/app (mounts %v)", b.Digest, mounted)
		}
	}
	if puts != 0 {
		t.Errorf("%d blob uploads despite mounts", puts)
	}
	dst := newStore(t)
	res2, err := r.Fetch(ctx, proxy.Host+"/dst/app:1", dst, remotes.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertPulled(t, dst, img, res2)

	// Without labels, PushOptions.MountFrom names the source.
	proxy.Reset()
	err = r.Push(ctx, proxy.Host+"/third/app:1", seedStore(t, img), img.Target, remotes.PushOptions{MountFrom: []string{"src/app"}})
	if err != nil {
		t.Fatal(err)
	}
	if mounted, puts := mounts(proxy, "third/app"); len(mounted) != len(blobs) || puts != 0 {
		t.Errorf("MountFrom: mounted %v, %d uploads", mounted, puts)
	}
	// A source that lacks the blobs falls back to uploading them.
	proxy.Reset()
	err = r.Push(ctx, proxy.Host+"/fourth/app:1", seedStore(t, img), img.Target, remotes.PushOptions{MountFrom: []string{"nowhere/app"}})
	if err != nil {
		t.Fatal(err)
	}
	if mounted, puts := mounts(proxy, "fourth/app"); len(mounted) != 0 || puts != len(blobs) {
		t.Errorf("mount from an empty repository: mounted %v, %d uploads, want %d", mounted, puts, len(blobs))
	}
}

func TestPushErrors(t *testing.T) {
	t.Parallel()
	img := buildImage(t, testimages.MultiPlatform)
	reg := registry.Start(t)
	ctx := testContext(t)
	r := remotes.NewResolver(remotes.Options{})

	// An index whose manifests are not all in the store (a pull of one
	// platform) cannot be pushed; the error names the missing manifest.
	partial := newStore(t)
	res, err := r.Fetch(ctx, pushedRef(t, reg, img), partial, remotes.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Push(ctx, reg.Host+"/copy:1", partial, res.Target, remotes.PushOptions{})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "not readable from the content store") {
		t.Errorf("push of a partial index: %v", err)
	}
	other := ocispec.Descriptor{MediaType: img.Target.MediaType, Digest: res.Manifests[0].Descriptor.Digest, Size: res.Manifests[0].Descriptor.Size}
	err = r.Push(ctx, reg.Host+"/copy@"+img.Target.Digest.String(), partial, other, remotes.PushOptions{})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("push with a mismatched reference digest: %v", err)
	}
}

func pushedRef(t *testing.T, reg *registry.Registry, img *testimages.Image) string {
	t.Helper()
	ref := reg.Host + "/multi:1"
	if err := remotes.NewResolver(remotes.Options{}).Push(testContext(t), ref, seedStore(t, img), img.Target, remotes.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	return ref
}
