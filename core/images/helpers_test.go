package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/require"
)

// needBusybox skips (or under CI=true fails) tests that build images from
// the host's static busybox.
func needBusybox(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(testimages.BusyboxPath); err != nil {
		require.Missing(t, testimages.BusyboxPath+" (busybox-static)")
	}
}

func newStore(t testing.TB) *local.Store {
	t.Helper()
	s, err := local.NewStore(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// put writes every blob of img into cs.
func put(t testing.TB, cs content.Store, img *testimages.Image) {
	t.Helper()
	for d, data := range img.Blobs {
		putBlob(t, cs, d, data)
	}
}

func putBlob(t testing.TB, cs content.Store, d digest.Digest, data []byte) {
	t.Helper()
	desc := ocispec.Descriptor{Digest: d, Size: int64(len(data))}
	if err := content.WriteBlob(context.Background(), cs, "test-"+d.String(), bytes.NewReader(data), desc); err != nil {
		t.Fatal(err)
	}
}

// putJSON stores v as a blob of media type mt and returns its descriptor.
func putJSON(t testing.TB, cs content.Store, mt string, v any) ocispec.Descriptor {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(data)
	putBlob(t, cs, d, data)
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(data))}
}

func index(manifests ...ocispec.Descriptor) ocispec.Index {
	return ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
}

func build(t testing.TB, f func(...testimages.Option) (*testimages.Image, error), opts ...testimages.Option) *testimages.Image {
	t.Helper()
	needBusybox(t)
	img, err := f(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// children decodes the manifests of a testimages index.
func children(t testing.TB, img *testimages.Image) []ocispec.Descriptor {
	t.Helper()
	ch, err := testimages.Children(img.Target, img.Blobs[img.Target.Digest])
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
