package remotes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/internal/testutil/registry"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkFetch pulls an image of four 8 MiB layers from the real
// registry into a fresh local store per iteration.
func BenchmarkFetch(b *testing.B) {
	reg := registry.Start(b)
	ctx := context.Background()
	src, err := local.NewStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	put := func(mt string, data []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := content.WriteBlob(ctx, src, "bench-"+d.Digest.String(), bytes.NewReader(data), d); err != nil {
			b.Fatal(err)
		}
		return d
	}
	rng := rand.New(rand.NewPCG(1, 2))
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	var total int64
	for range 4 {
		layer := make([]byte, 8<<20)
		for i := 0; i < len(layer); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				layer[i+j] = byte(v >> (8 * j))
			}
		}
		m.Layers = append(m.Layers, put(ocispec.MediaTypeImageLayerGzip, layer))
		total += int64(len(layer))
	}
	m.Config = put(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}`))
	mb, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	root := put(ocispec.MediaTypeImageManifest, mb)
	ref := reg.Host + "/bench/fetch:1"
	r := remotes.NewResolver(remotes.Options{})
	if err := r.Push(ctx, ref, src, root, remotes.PushOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		dst, err := local.NewStore(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := r.Fetch(ctx, ref, dst, remotes.FetchOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
