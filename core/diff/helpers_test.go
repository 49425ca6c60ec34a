package diff

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/require"
	"github.com/berthd/berth/snapshotters/native"
	"github.com/berthd/berth/snapshotters/overlay"
)

// newStore returns a content store in a temporary folder.
func newStore(t *testing.T) *local.Store {
	t.Helper()
	s, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ingest writes every blob of img into store.
func ingest(t *testing.T, store content.Store, img *testimages.Image) {
	t.Helper()
	err := img.Walk(func(desc ocispec.Descriptor, data []byte) error {
		return content.WriteBlob(context.Background(), store, "test-"+desc.Digest.Encoded(), bytes.NewReader(data), desc)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshotterCase is a raw snapshotter to run a test against.
type snapshotterCase struct {
	name string
	new  func(t *testing.T) snapshots.Snapshotter
}

// snapshotterCases are overlay (skipped where the kernel lacks it) and
// native, each in its own temporary root, closed at the end of the test.
func snapshotterCases() []snapshotterCase {
	return []snapshotterCase{
		{"overlayfs", func(t *testing.T) snapshots.Snapshotter {
			s, err := overlay.New(scratchDir(t), overlay.WithSyncRemove())
			if errors.Is(err, overlay.ErrUnsupported) {
				require.Missing(t, "overlayfs support: "+err.Error())
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"native", func(t *testing.T) snapshots.Snapshotter {
			s, err := native.New(scratchDir(t), native.WithSyncRemove())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
}

// scratchDir is a temporary folder that must hold no mounts when the test
// ends.
func scratchDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		if left, _ := mount.MountedUnder(dir); len(left) > 0 {
			t.Errorf("mounts left under %s: %v", dir, left)
			mount.UnmountRecursive(dir, 0)
		}
	})
	return dir
}

// resolved is the manifest and diff IDs of a test image for the host.
type resolved struct {
	manifest ocispec.Manifest
	diffIDs  []digest.Digest
}

func resolve(t *testing.T, img *testimages.Image) resolved {
	t.Helper()
	r, err := img.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	return resolved{manifest: r.Manifest, diffIDs: r.Config.RootFS.DiffIDs}
}

// applyAll applies every layer of r onto sn, committing each as its chain
// ID, and returns the top chain ID.
func applyAll(t *testing.T, d *Differ, sn snapshots.Snapshotter, r resolved) string {
	t.Helper()
	ctx := context.Background()
	chain := images.ChainIDs(r.diffIDs)
	parent := ""
	for i, layer := range r.manifest.Layers {
		key := "apply-" + chain[i].Encoded()
		mounts, err := sn.Prepare(ctx, key, parent)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Apply(ctx, layer, mounts, WithDiffID(r.diffIDs[i]))
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if got.Digest != r.diffIDs[i] || got.MediaType != ocispec.MediaTypeImageLayer || got.Size <= 0 {
			t.Fatalf("layer %d: Apply returned %+v, want diff ID %s", i, got, r.diffIDs[i])
		}
		if err := sn.Commit(ctx, chain[i].String(), key); err != nil {
			t.Fatal(err)
		}
		parent = chain[i].String()
	}
	return parent
}

// withView mounts a read-only view of parent and calls f with its root.
func withView(t *testing.T, sn snapshots.Snapshotter, parent string, f func(root string)) {
	t.Helper()
	ctx := context.Background()
	key := "view-" + filepath.Base(t.Name()) + "-" + parent
	mounts, err := sn.View(ctx, key, parent)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Remove(ctx, key)
	if err := mount.WithTempMount(mounts, func(root string) error {
		f(root)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// writeFile writes a file under root, creating its directory.
func writeFile(t *testing.T, root, name, data string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
