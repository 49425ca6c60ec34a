package unpack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/require"
	"github.com/berthd/berth/snapshotters/native"
	"github.com/berthd/berth/snapshotters/overlay"
)

// env is a content store and a snapshotter, raw or behind core/metadata.
type env struct {
	t     *testing.T
	ctx   context.Context
	store content.Store
	sn    snapshots.Snapshotter
	name  string
	db    *metadata.DB
}

// newRawEnv is a local content store and a raw snapshotter (overlayfs or
// native) in temporary folders.
func newRawEnv(t *testing.T, name string) *env {
	t.Helper()
	require.Root(t)
	dir := scratchDir(t)
	store, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: context.Background(), store: store, sn: newSnapshotter(t, name, filepath.Join(dir, name)), name: name}
}

// newMetaEnv is core/metadata over a local store and a native
// snapshotter, working in namespace "test"; GC runs only when asked.
func newMetaEnv(t *testing.T) *env {
	t.Helper()
	require.Root(t)
	dir := scratchDir(t)
	store, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	raw := newSnapshotter(t, "native", filepath.Join(dir, "native"))
	db, err := metadata.Open(filepath.Join(dir, "meta.db"), metadata.WithGCConfig(gc.Config{Delay: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Init(context.Background(), store, map[string]snapshots.Snapshotter{"native": raw}); err != nil {
		t.Fatal(err)
	}
	return &env{
		t: t, ctx: namespaces.WithNamespace(context.Background(), "test"),
		store: db.ContentStore(), sn: db.Snapshotter("native"), name: "native", db: db,
	}
}

func newSnapshotter(t testing.TB, name, root string) snapshots.Snapshotter {
	t.Helper()
	var (
		sn  snapshots.Snapshotter
		err error
	)
	switch name {
	case "overlayfs":
		sn, err = overlay.New(root, overlay.WithSyncRemove())
		if errors.Is(err, overlay.ErrUnsupported) {
			require.Missing(t, "overlayfs support: "+err.Error())
		}
	default:
		sn, err = native.New(root, native.WithSyncRemove())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	return sn
}

// scratchDir is a temporary folder that must hold no mounts at the end.
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

func (e *env) unpacker(opts ...Opt) *Unpacker {
	return New(e.store, diff.New(e.store), opts...)
}

// ingest writes every blob of img, with the gc.ref.content labels of
// manifests and indexes that an import sets, so that an image record
// keeps its whole graph.
func (e *env) ingest(img *testimages.Image) {
	e.t.Helper()
	err := img.Walk(func(desc ocispec.Descriptor, data []byte) error {
		if err := e.put(desc, data); err != nil {
			return err
		}
		children, err := testimages.Children(desc, data)
		if err != nil || len(children) == 0 {
			return err
		}
		return images.SetChildGCLabels(e.ctx, e.store, desc, children)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) put(desc ocispec.Descriptor, data []byte) error {
	return content.WriteBlob(e.ctx, e.store, "test-"+desc.Digest.Encoded(), bytes.NewReader(data), desc)
}

// snapshots lists the snapshots by name.
func (e *env) snapshots() map[string]snapshots.Info {
	e.t.Helper()
	out := map[string]snapshots.Info{}
	err := e.sn.Walk(e.ctx, func(_ context.Context, info snapshots.Info) error {
		out[info.Name] = info
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// noExtractions fails when an extraction snapshot is left.
func (e *env) noExtractions() {
	e.t.Helper()
	for name, info := range e.snapshots() {
		if strings.HasPrefix(name, KeyPrefix+"-") || info.Kind != snapshots.KindCommitted {
			e.t.Errorf("snapshot %q (%s) left behind", name, info.Kind)
		}
	}
}

// check mounts a view of chainID and checks it against want.
func (e *env) check(chainID digest.Digest, want testimages.Expectation) {
	e.t.Helper()
	key := "check-" + chainID.Encoded()
	mounts, err := e.sn.View(e.ctx, key, chainID.String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer e.sn.Remove(e.ctx, key)
	err = mount.WithTempMount(mounts, func(root string) error { return want.Check(root) })
	if err != nil {
		e.t.Fatal(err)
	}
}

func multiLayer(t *testing.T, opts ...testimages.Option) *testimages.Image {
	t.Helper()
	img, err := testimages.MultiLayer(opts...)
	if err != nil {
		require.Missing(t, err.Error())
	}
	return img
}

func busybox(t *testing.T, opts ...testimages.Option) *testimages.Image {
	t.Helper()
	img, err := testimages.Busybox(opts...)
	if err != nil {
		require.Missing(t, err.Error())
	}
	return img
}

// withBadDiffID returns img (a single manifest) with the diff ID of layer
// i in its config replaced, under a new manifest and config.
func withBadDiffID(t *testing.T, img *testimages.Image, i int) *testimages.Image {
	t.Helper()
	var m ocispec.Manifest
	if err := json.Unmarshal(img.Blobs[img.Target.Digest], &m); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Blobs[m.Config.Digest], &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.RootFS.DiffIDs[i] = digest.FromString("wrong diff ID")
	out := &testimages.Image{Name: img.Name, Blobs: map[digest.Digest][]byte{}}
	for d, b := range img.Blobs {
		out.Blobs[d] = b
	}
	m.Config = addJSON(t, out, m.Config.MediaType, cfg)
	out.Target = addJSON(t, out, img.Target.MediaType, m)
	return out
}

// withLayerMediaType returns img with layer i's media type replaced.
func withLayerMediaType(t *testing.T, img *testimages.Image, i int, mt string) *testimages.Image {
	t.Helper()
	var m ocispec.Manifest
	if err := json.Unmarshal(img.Blobs[img.Target.Digest], &m); err != nil {
		t.Fatal(err)
	}
	m.Layers[i].MediaType = mt
	out := &testimages.Image{Name: img.Name, Blobs: map[digest.Digest][]byte{}}
	for d, b := range img.Blobs {
		out.Blobs[d] = b
	}
	out.Target = addJSON(t, out, img.Target.MediaType, m)
	return out
}

func addJSON(t *testing.T, img *testimages.Image, mt string, v any) ocispec.Descriptor {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
	img.Blobs[desc.Digest] = data
	return desc
}
