package metadata

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/images"
)

// benchBlobsPerImage is a manifest, a config and eight layers.
const benchBlobsPerImage = 10

// seedImages stores n images of benchBlobsPerImage blobs each, with image
// records when withImages is set (otherwise the blobs are garbage). Blob
// files are written straight into the local store's layout and records in
// one transaction: committing ten thousand blobs one fsync at a time would
// make the setup, not the collection, the benchmark.
func seedImages(b *testing.B, e *env, prefix string, n int, withImages bool) {
	b.Helper()
	dir := filepath.Join(e.blobs.Root(), "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	put := func(data string) ocispec.Descriptor {
		d := blobDesc([]byte(data))
		if err := os.WriteFile(filepath.Join(dir, d.Digest.Encoded()), []byte(data), 0o444); err != nil {
			b.Fatal(err)
		}
		return d
	}
	type image struct {
		name   string
		blobs  []ocispec.Descriptor
		labels map[string]string
	}
	var imgs []image
	for i := range n {
		img := image{name: fmt.Sprintf("%s/image-%d", prefix, i), labels: map[string]string{}}
		for j := 1; j < benchBlobsPerImage; j++ {
			d := put(fmt.Sprintf("%s blob %d of image %d", prefix, j, i))
			img.blobs = append(img.blobs, d)
			img.labels["containerd.io/gc.ref.content.l."+strconv.Itoa(j)] = d.Digest.String()
		}
		manifest := put(fmt.Sprintf("%s manifest of image %d", prefix, i))
		manifest.MediaType = ocispec.MediaTypeImageManifest
		img.blobs = append([]ocispec.Descriptor{manifest}, img.blobs...)
		imgs = append(imgs, img)
	}
	err := e.db.Update(func(tx *bolt.Tx) error {
		for _, img := range imgs {
			for k, d := range img.blobs {
				var lbls map[string]string
				if k == 0 {
					lbls = img.labels
				}
				if err := recordBlob(tx, "bench", d.Digest, d.Size, lbls); err != nil {
					return err
				}
			}
			if withImages {
				t := now()
				if err := putImage(tx, "bench", images.Image{Name: img.name, Target: img.blobs[0], CreatedAt: t, UpdatedAt: t}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGarbageCollect10k collects a namespace of 10,000 blobs reached
// from 1,000 images through gc.ref labels.
func BenchmarkGarbageCollect10k(b *testing.B) {
	e := newEnv(b, manualGC)
	seedImages(b, e, "kept", 1000, true)
	ctx := context.Background()

	b.Run("full-nothing-to-remove", func(b *testing.B) {
		for b.Loop() {
			st, err := e.db.GarbageCollect(ctx)
			if err != nil || st.Removed() {
				b.Fatalf("%+v, %v", st, err)
			}
		}
	})
	b.Run("records-only", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.db.scheduledCollect(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("remove-1000-of-11000", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			seedImages(b, e, fmt.Sprintf("garbage-%d", i), 100, false)
			b.StartTimer()
			st, err := e.db.GarbageCollect(ctx)
			if err != nil || len(st.Blobs) != 100*benchBlobsPerImage {
				b.Fatalf("removed %d blobs, %v", len(st.Blobs), err)
			}
		}
	})
}
