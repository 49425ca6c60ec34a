package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/platforms"
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
	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/core/transfer"
	"github.com/berthd/berth/core/unpack"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/registry"
	"github.com/berthd/berth/internal/testutil/require"
	"github.com/berthd/berth/snapshotters/native"
	"github.com/berthd/berth/snapshotters/overlay"
)

// env is an Engine over core/metadata with a real local content store and
// a real snapshotter (overlayfs where it works, else native), as berthd
// wires it; garbage collection runs only when a test asks.
type env struct {
	t       *testing.T
	db      *metadata.DB
	engine  *transfer.Engine
	sn      string
	scratch string
}

// scratchLeft lists what pulls left in the scratch folder.
func (e *env) scratchLeft() []string {
	e.t.Helper()
	ents, err := os.ReadDir(e.scratch)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, d := range ents {
		out = append(out, d.Name())
	}
	return out
}

func newEnv(t *testing.T) *env {
	t.Helper()
	require.Root(t)
	dir := t.TempDir()
	t.Cleanup(func() {
		if left, _ := mount.MountedUnder(dir); len(left) > 0 {
			t.Errorf("mounts left under %s: %v", dir, left)
			mount.UnmountRecursive(dir, 0)
		}
	})
	blobs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	name := "overlayfs"
	var sn snapshots.Snapshotter
	sn, err = overlay.New(filepath.Join(dir, name), overlay.WithSyncRemove())
	if errors.Is(err, overlay.ErrUnsupported) {
		name = "native"
		sn, err = native.New(filepath.Join(dir, name), native.WithSyncRemove())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	db, err := metadata.Open(filepath.Join(dir, "meta.db"), metadata.WithGCConfig(gc.Config{Delay: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Init(context.Background(), blobs, map[string]snapshots.Snapshotter{name: sn}); err != nil {
		t.Fatal(err)
	}
	cs := db.ContentStore()
	u := unpack.New(cs, transfer.TrackApplies(diff.New(transfer.TrackReads(cs))), unpack.WithLeases(db.Leases()))
	e := &env{t: t, db: db, sn: name, scratch: filepath.Join(dir, "scratch")}
	e.engine = transfer.New(transfer.Config{
		Content: cs, Images: db.Images(), Leases: db.Leases(),
		Unpacker: u,
		Snapshotter: func(_ context.Context, n string) (string, snapshots.Snapshotter, error) {
			if n == "" {
				n = name
			}
			return n, db.Snapshotter(n), nil
		},
		HostDir:    t.TempDir(),
		ScratchDir: e.scratch,
	})
	return e
}

func ctxIn(t *testing.T, ns string) context.Context {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func buildImage(t *testing.T, build func(...testimages.Option) (*testimages.Image, error), opts ...testimages.Option) *testimages.Image {
	t.Helper()
	img, err := build(opts...)
	if err != nil {
		require.Missing(t, err.Error())
	}
	return img
}

// push puts img into a registry at ref straight from its blobs.
func push(t *testing.T, img *testimages.Image, ref string) {
	t.Helper()
	src, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxIn(t, "seed")
	for d, b := range img.Blobs {
		desc := ocispec.Descriptor{Digest: d, Size: int64(len(b))}
		if err := content.WriteBlob(ctx, src, "seed-"+d.String(), bytes.NewReader(b), desc); err != nil {
			t.Fatal(err)
		}
	}
	if err := remotes.NewResolver(remotes.Options{}).Push(ctx, ref, src, img.Target, remotes.PushOptions{}); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// events collects progress events.
type events struct {
	mu   sync.Mutex
	list []transfer.Progress
}

func (e *events) add(p transfer.Progress) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, p)
}

// of returns the events named name, in order.
func (e *events) of(name string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, p := range e.list {
		if p.Name == name {
			out = append(out, p.Event)
		}
	}
	return out
}

// checkRootFS mounts a view of the snapshot chainID and checks it.
func (e *env) checkRootFS(ctx context.Context, chainID digest.Digest, want testimages.Expectation) {
	e.t.Helper()
	sn := e.db.Snapshotter(e.sn)
	key := "check-" + chainID.Encoded()
	mounts, err := sn.View(ctx, key, chainID.String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer sn.Remove(ctx, key)
	if err := mount.WithTempMount(mounts, want.Check); err != nil {
		e.t.Fatal(err)
	}
}

// gc runs a full collection.
func (e *env) gc(ctx context.Context) {
	e.t.Helper()
	if _, err := e.db.GarbageCollect(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// complete checks that every blob of img's platform manifest (and its
// index) is in the store.
func (e *env) complete(ctx context.Context, img images.Image) error {
	r, err := images.ResolveManifest(ctx, e.db.ContentStore(), img.Target, platforms.Default())
	if err != nil {
		return err
	}
	for _, b := range append(r.Blobs(), img.Target) {
		if _, err := e.db.ContentStore().Info(ctx, b.Digest); err != nil {
			return err
		}
	}
	return nil
}

// committed lists committed snapshot names.
func (e *env) committed(ctx context.Context) map[string]bool {
	e.t.Helper()
	out := map[string]bool{}
	err := e.db.Snapshotter(e.sn).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindCommitted {
			out[info.Name] = true
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// blobGETs counts GETs of blob d through the proxy.
func blobGETs(p *registry.Proxy, d digest.Digest) int {
	return p.CountFunc(func(r registry.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/blobs/"+d.String())
	})
}
