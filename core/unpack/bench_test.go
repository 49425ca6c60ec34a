package unpack

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/require"
)

// BenchmarkUnpack unpacks a generated 6-layer gzip image (64 MiB of files,
// BERTH_BENCH_SIZE bytes when set) into a fresh overlayfs and native
// snapshotter per iteration; BERTH_BENCH_DIR chooses where the roots live
// (default the system temporary folder, e.g. /dev/shm for tmpfs).
func BenchmarkUnpack(b *testing.B) {
	require.Root(b)
	size := int64(64 << 20)
	if s, err := strconv.ParseInt(os.Getenv("BERTH_BENCH_SIZE"), 10, 64); err == nil && s > 0 {
		size = s
	}
	base, err := os.MkdirTemp(os.Getenv("BERTH_BENCH_DIR"), "berth-unpack-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(base)
	layout := filepath.Join(base, "layout")
	target, err := testimages.GenerateBench(layout, testimages.BenchSpec{Size: size})
	if err != nil {
		b.Fatal(err)
	}
	store, err := local.NewStore(filepath.Join(base, "content"))
	if err != nil {
		b.Fatal(err)
	}
	ingestLayout(b, store, layout)
	u := New(store, diff.New(store))
	for _, name := range []string{"overlayfs", "native"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for i := range b.N {
				root := filepath.Join(base, name+strconv.Itoa(i))
				sn := newSnapshotter(b, name, root)
				res, err := u.Unpack(context.Background(), target, name, sn)
				if err != nil || res.Applied != 6 {
					b.Fatalf("unpack: %+v, %v", res, err)
				}
				b.StopTimer()
				sn.Close()
				os.RemoveAll(root)
				b.StartTimer()
			}
		})
	}
}

// ingestLayout copies every blob of an OCI layout into store.
func ingestLayout(b *testing.B, store content.Store, layout string) {
	dir := filepath.Join(layout, ocispec.ImageBlobsDir, "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		fi, _ := f.Stat()
		desc := ocispec.Descriptor{Digest: digest.NewDigestFromEncoded(digest.SHA256, e.Name()), Size: fi.Size()}
		err = content.WriteBlob(context.Background(), store, "bench-"+e.Name(), f, desc)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}
