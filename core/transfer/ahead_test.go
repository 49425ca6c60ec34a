package transfer

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
)

// blob stores data (gzipped when zip) and returns its descriptor.
func blob(t *testing.T, s content.Ingester, data []byte, zip bool) ocispec.Descriptor {
	t.Helper()
	mt := ocispec.MediaTypeImageLayer
	if zip {
		var buf bytes.Buffer
		w, err := compression.CompressStream(&buf, compression.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		data, mt = buf.Bytes(), ocispec.MediaTypeImageLayerGzip
	}
	desc := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := content.WriteBlob(context.Background(), s, "t-"+desc.Digest.Encoded(), bytes.NewReader(data), desc); err != nil {
		t.Fatal(err)
	}
	return desc
}

func readAll(t *testing.T, ra content.ReaderAt) []byte {
	t.Helper()
	defer ra.Close()
	b, err := io.ReadAll(content.NewReader(ra))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInflateAheadOnlyLayersWaitingTheirTurn(t *testing.T) {
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	plain := [][]byte{bytes.Repeat([]byte("zero "), 1000), bytes.Repeat([]byte("one "), 2000), bytes.Repeat([]byte("two "), 3000)}
	layers := []ocispec.Descriptor{blob(t, store, plain[0], true), blob(t, store, plain[1], true), blob(t, store, plain[2], false)}
	manifest := ocispec.Descriptor{Digest: digest.FromString("manifest")}

	a := newAhead(ctx, dir, store, make(chan struct{}, 1), false, nil)
	a.manifest(manifest, ocispec.Manifest{Layers: layers})
	a.landed(manifest, 0, layers[0]) // its turn: read from the blob
	a.landed(manifest, 1, layers[1]) // waits for layer 0: inflated now
	a.landed(manifest, 2, layers[2]) // not compressed: nothing to gain
	if _, ok := a.open(ctx, layers[0]); ok {
		t.Error("layer 0 was inflated ahead although its turn had come")
	}
	ra, ok := a.open(ctx, layers[1])
	if !ok {
		t.Fatal("layer 1 was not inflated ahead")
	}
	if got := readAll(t, ra); !bytes.Equal(got, plain[1]) {
		t.Errorf("layer 1 inflated to %d bytes, want its %d", len(got), len(plain[1]))
	}
	if _, ok := a.open(ctx, layers[2]); ok {
		t.Error("an uncompressed layer was copied ahead")
	}
	a.done(layers[0])
	a.done(layers[1])
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("inflated layer kept after it was applied: %v", ents)
	}
	a.close()

	// A layer whose predecessors are all applied when it lands streams.
	b := newAhead(ctx, dir, store, make(chan struct{}, 1), false, nil)
	b.manifest(manifest, ocispec.Manifest{Layers: layers})
	b.done(layers[0])
	b.landed(manifest, 1, layers[1])
	if _, ok := b.open(ctx, layers[1]); ok {
		t.Error("layer 1 inflated ahead although layer 0 was applied")
	}
	// A manifest no unpack uses (another platform's) is left alone.
	other := ocispec.Descriptor{Digest: digest.FromString("other platform")}
	b.landed(other, 2, layers[0])
	if _, ok := b.open(ctx, layers[0]); ok {
		t.Error("a layer of a manifest no unpack uses was inflated")
	}
	// close removes what was never applied.
	b.landed(manifest, 0, layers[0])
	c := newAhead(ctx, dir, store, make(chan struct{}, 1), false, nil)
	c.manifest(manifest, ocispec.Manifest{Layers: layers})
	c.landed(manifest, 1, layers[1])
	if _, ok := c.open(ctx, layers[1]); !ok {
		t.Fatal("layer 1 not inflated")
	}
	c.close()
	b.close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("close left inflated layers: %v", ents)
	}
}
