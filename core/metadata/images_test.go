package metadata

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
)

func target(s string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(s), Size: int64(len(s))}
}

func TestImageRecords(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	is := e.db.Images()
	img := images.Image{Name: "docker.io/library/busybox:latest", Target: target("m1"), Labels: map[string]string{"tier": "base"}}
	created, err := is.Create(ctx, img)
	if err != nil || created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Fatalf("create: %+v, %v", created, err)
	}
	_, err = is.Create(ctx, img)
	wantErr(t, "create of a taken name", err, errdefs.ErrAlreadyExists)
	got, err := is.Get(ctx, img.Name)
	if err != nil || !reflect.DeepEqual(got, created) {
		t.Errorf("get %+v, %v; want %+v", got, err, created)
	}
	if _, err := is.Get(nsCtx("b"), img.Name); !errdefs.IsNotFound(err) {
		t.Errorf("get from another namespace: %v", err)
	}

	upd := images.Image{Name: img.Name, Target: target("m2"), Labels: map[string]string{"new": "1", "tier": "ignored"}}
	upd.Target.Annotations = map[string]string{"org.opencontainers.image.ref.name": "latest"}
	got, err = is.Update(ctx, upd, "labels.new", "target")
	if err != nil || got.Target.Digest != upd.Target.Digest || !reflect.DeepEqual(got.Labels, map[string]string{"tier": "base", "new": "1"}) {
		t.Errorf("field-path update: %+v, %v", got, err)
	}
	if !got.CreatedAt.Equal(created.CreatedAt) || got.UpdatedAt.Before(created.UpdatedAt) {
		t.Errorf("update times: created %v updated %v", got.CreatedAt, got.UpdatedAt)
	}
	if got.Target.Annotations["org.opencontainers.image.ref.name"] != "latest" {
		t.Errorf("target annotations not stored: %v", got.Target.Annotations)
	}
	got, _ = is.Update(ctx, images.Image{Name: img.Name, Target: target("m2")}, "annotations")
	if len(got.Target.Annotations) != 0 {
		t.Errorf("annotations update to none: %v", got.Target.Annotations)
	}
	got, _ = is.Update(ctx, images.Image{Name: img.Name, Target: target("m3")})
	if got.Target.Digest != target("m3").Digest || len(got.Labels) != 0 {
		t.Errorf("update without paths must replace labels and target: %+v", got)
	}
	_, err = is.Update(ctx, images.Image{Name: img.Name}, "name")
	wantErr(t, "update of the name", err, errdefs.ErrInvalidArgument)
	_, err = is.Update(ctx, images.Image{Name: img.Name}, "target")
	wantErr(t, "update to an empty target", err, errdefs.ErrInvalidArgument)
	_, err = is.Update(ctx, images.Image{Name: "missing", Target: target("x")})
	wantErr(t, "update of a missing image", err, errdefs.ErrNotFound)

	other := target("other")
	wantErr(t, "delete of another target", is.Delete(ctx, img.Name, images.DeleteTarget(&other)), errdefs.ErrFailedPrecondition)
	m3 := target("m3")
	if err := is.Delete(ctx, img.Name, images.DeleteTarget(&m3)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "second delete", is.Delete(ctx, img.Name), errdefs.ErrNotFound)
}

func TestImageValidation(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	is := e.db.Images()
	good := target("m")
	for _, c := range []struct {
		what string
		img  images.Image
	}{
		{"empty name", images.Image{Target: good}},
		{"space in name", images.Image{Name: "a b", Target: good}},
		{"control character", images.Image{Name: "a\nb", Target: good}},
		{"non-ASCII", images.Image{Name: "bäd", Target: good}},
		{"overlong name", images.Image{Name: strings.Repeat("a", maxImageName+1), Target: good}},
		{"no digest", images.Image{Name: "x", Target: ocispec.Descriptor{MediaType: "m", Size: 1}}},
		{"bad digest", images.Image{Name: "x", Target: ocispec.Descriptor{MediaType: "m", Size: 1, Digest: "sha256:abc"}}},
		{"no size", images.Image{Name: "x", Target: ocispec.Descriptor{MediaType: "m", Digest: good.Digest}}},
		{"no media type", images.Image{Name: "x", Target: ocispec.Descriptor{Size: 1, Digest: good.Digest}}},
		{"empty label key", images.Image{Name: "x", Target: good, Labels: map[string]string{"": "v"}}},
	} {
		_, err := is.Create(ctx, c.img)
		wantErr(t, c.what, err, errdefs.ErrInvalidArgument)
	}
	for _, name := range []string{"localhost:5000/a/b:tag", "x@sha256:" + strings.Repeat("a", 64), "import-2024-01-01"} {
		if _, err := is.Create(ctx, images.Image{Name: name, Target: good}); err != nil {
			t.Errorf("create %q: %v", name, err)
		}
	}
}

func TestImageFilters(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	is := e.db.Images()
	index := target("idx")
	index.MediaType = ocispec.MediaTypeImageIndex
	for _, img := range []images.Image{
		{Name: "docker.io/library/busybox:1", Target: target("b1"), Labels: map[string]string{"os": "linux"}},
		{Name: "docker.io/library/busybox:2", Target: index},
		{Name: "ghcr.io/x/tool:1", Target: target("t1"), Labels: map[string]string{"os": "linux", "a.b": "c"}},
	} {
		if _, err := is.Create(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	list := func(fs ...string) []string {
		imgs, err := is.List(ctx, fs...)
		if err != nil {
			t.Fatalf("list %q: %v", fs, err)
		}
		var names []string
		for _, i := range imgs {
			names = append(names, i.Name)
		}
		slices.Sort(names)
		return names
	}
	for _, c := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"docker.io/library/busybox:1", "docker.io/library/busybox:2", "ghcr.io/x/tool:1"}},
		{[]string{"name==ghcr.io/x/tool:1"}, []string{"ghcr.io/x/tool:1"}},
		{[]string{`name~=^docker\.io/library/busybox`}, []string{"docker.io/library/busybox:1", "docker.io/library/busybox:2"}},
		{[]string{"target.mediatype==" + ocispec.MediaTypeImageIndex}, []string{"docker.io/library/busybox:2"}},
		{[]string{"target.digest==" + target("t1").Digest.String()}, []string{"ghcr.io/x/tool:1"}},
		{[]string{"labels.os==linux,name~=busybox"}, []string{"docker.io/library/busybox:1"}},
		{[]string{`labels."a.b"==c`, "name==docker.io/library/busybox:2"}, []string{"docker.io/library/busybox:2", "ghcr.io/x/tool:1"}},
	} {
		if got := list(c.filters...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("filters %q: %q, want %q", c.filters, got, c.want)
		}
	}
	if _, err := is.List(ctx, "name=="); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v", err)
	}
}

func TestSynchronousImageDeleteCollectsContent(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, l := e.lease(nsCtx("a"))
	layer := e.write(ctx, []byte("layer"), nil)
	config := e.write(ctx, []byte("config"), nil)
	manifest := e.write(ctx, []byte("manifest"), map[string]string{
		"containerd.io/gc.ref.content.config": config.Digest.String(),
		"containerd.io/gc.ref.content.l.0":    layer.Digest.String(),
	})
	manifest.MediaType = ocispec.MediaTypeImageManifest
	if _, err := e.db.Images().Create(ctx, images.Image{Name: "img", Target: manifest}); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Leases().Delete(ctx, l); err != nil {
		t.Fatal(err)
	}
	if st := e.gc(); len(st.Blobs) != 0 {
		t.Fatalf("collection with the image removed %v", st.Blobs)
	}
	if err := e.db.Images().Delete(ctx, "img", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []ocispec.Descriptor{layer, config, manifest} {
		if e.inBackend(d.Digest) {
			t.Errorf("%s still stored after a synchronous image delete", d.Digest)
		}
	}
}
