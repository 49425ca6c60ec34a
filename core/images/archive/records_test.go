package archive

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/namespaces"
)

// failingCreate is the real image store, except that creating one name
// fails, as a store error part way through an import would.
type failingCreate struct {
	images.Store
	name string
}

func (f failingCreate) Create(ctx context.Context, img images.Image) (images.Image, error) {
	if img.Name == f.name {
		return images.Image{}, fmt.Errorf("injected failure: %w", errdefs.ErrUnavailable)
	}
	return f.Store.Create(ctx, img)
}

// TestWriteRecordsUndo checks that a failure while writing image records
// restores the ones already written.
func TestWriteRecordsUndo(t *testing.T) {
	db, err := metadata.Open(filepath.Join(t.TempDir(), "meta.db"), metadata.WithGCConfig(gc.Config{Delay: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := namespaces.WithNamespace(context.Background(), "test")
	target := func(s string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(s), Size: 10}
	}
	is := db.Images()
	if _, err := is.Create(ctx, images.Image{Name: "a", Target: target("old"), Labels: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	_, err = writeRecords(ctx, failingCreate{is, "c"}, []images.Image{
		{Name: "a", Target: target("new")},
		{Name: "b", Target: target("new")},
		{Name: "c", Target: target("new")},
	})
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("writeRecords: %v", err)
	}
	a, err := is.Get(ctx, "a")
	if err != nil || a.Target.Digest != target("old").Digest || a.Labels["k"] != "v" {
		t.Errorf("a was not restored: %+v, %v", a, err)
	}
	for _, n := range []string{"b", "c"} {
		if _, err := is.Get(ctx, n); !errdefs.IsNotFound(err) {
			t.Errorf("%s left behind: %v", n, err)
		}
	}
}
