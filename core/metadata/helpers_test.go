package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/snapshotters/native"
)

// env is a database over a real local content store and a real native
// snapshotter in a temporary folder.
type env struct {
	t      testing.TB
	dir    string
	opts   []Opt
	db     *DB
	blobs  *local.Store
	native *native.Snapshotter
}

// manualGC keeps the scheduler from running on its own (an hour of delay):
// tests call GarbageCollect and look at exactly what it did.
var manualGC = WithGCConfig(gc.Config{Delay: time.Hour})

func newEnv(t testing.TB, opts ...Opt) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), opts: opts}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	var err error
	if e.blobs, err = local.NewStore(filepath.Join(e.dir, "content")); err != nil {
		e.t.Fatal(err)
	}
	if e.native, err = native.New(filepath.Join(e.dir, "native"), native.WithSyncRemove()); err != nil {
		e.t.Fatal(err)
	}
	if e.db, err = Open(filepath.Join(e.dir, "meta.db"), e.opts...); err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.Init(context.Background(), e.blobs, map[string]snapshots.Snapshotter{"native": e.native}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.db == nil {
		return
	}
	if err := e.db.Close(); err != nil {
		e.t.Errorf("close db: %v", err)
	}
	if err := e.native.Close(); err != nil {
		e.t.Errorf("close native: %v", err)
	}
	e.db = nil
}

func (e *env) reopen() {
	e.t.Helper()
	e.close()
	e.open()
}

func (e *env) cs() content.Store                              { return e.db.ContentStore() }
func (e *env) sn() snapshots.Snapshotter                      { return e.db.Snapshotter("native") }
func nsCtx(ns string) context.Context                         { return namespaces.WithNamespace(context.Background(), ns) }
func leaseCtx(ctx context.Context, id string) context.Context { return leases.WithLease(ctx, id) }

// gc runs a full collection and fails the test on error.
func (e *env) gc() gc.Stats {
	e.t.Helper()
	st, err := e.db.GarbageCollect(context.Background())
	if err != nil {
		e.t.Fatalf("garbage collect: %v", err)
	}
	return st
}

// lease creates a lease in the namespace of ctx and returns ctx with it.
func (e *env) lease(ctx context.Context, opts ...leases.Opt) (context.Context, leases.Lease) {
	e.t.Helper()
	l, err := e.db.Leases().Create(ctx, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return leases.WithLease(ctx, l.ID), l
}

func blobDesc(data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// write stores data through the namespaced store with labels.
func (e *env) write(ctx context.Context, data []byte, lbls map[string]string) ocispec.Descriptor {
	e.t.Helper()
	desc := blobDesc(data)
	if err := content.WriteBlob(ctx, e.cs(), "ref-"+desc.Digest.Encoded()[:12], bytes.NewReader(data), desc, content.WithLabels(lbls)); err != nil {
		e.t.Fatalf("write blob: %v", err)
	}
	return desc
}

// readable reports whether ctx's namespace can read desc intact.
func (e *env) readable(ctx context.Context, desc ocispec.Descriptor) bool {
	_, err := content.ReadBlob(ctx, e.cs(), desc, 1<<20)
	return err == nil
}

// inBackend reports whether the backing store holds dgst.
func (e *env) inBackend(dgst digest.Digest) bool {
	_, err := e.blobs.Info(context.Background(), dgst)
	return err == nil
}

// backingSnapshots lists the backing native snapshotter's keys.
func (e *env) backingSnapshots() []string {
	e.t.Helper()
	var keys []string
	err := e.native.Walk(context.Background(), func(_ context.Context, info snapshots.Info) error {
		keys = append(keys, info.Name)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// commitChain commits a chain of n snapshots named prefix-1..n with
// snapshot.ref labels as an unpacker does, returning the top name.
func commitChain(t testing.TB, ctx context.Context, sn snapshots.Snapshotter, prefix string, n int, extra map[string]string) string {
	t.Helper()
	parent := ""
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		lbls := map[string]string{labelSnapshotRef: name}
		for k, v := range extra {
			lbls[k] = v
		}
		key := "extract-" + name
		if _, err := sn.Prepare(ctx, key, parent, snapshots.WithLabels(lbls)); err != nil {
			t.Fatalf("prepare %s: %v", key, err)
		}
		if err := sn.Commit(ctx, name, key, snapshots.WithLabels(lbls)); err != nil {
			t.Fatalf("commit %s: %v", name, err)
		}
		parent = name
	}
	return parent
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

// nodeKeys lists the keys of the nodes of type typ, sorted.
func nodeKeys(nodes []gc.Node, typ gc.ResourceType) []string {
	var out []string
	for _, n := range nodes {
		if n.Type == typ {
			out = append(out, n.Namespace+"/"+n.Key)
		}
	}
	slices.Sort(out)
	return out
}

func digests(ds ...digest.Digest) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.String())
	}
	slices.Sort(out)
	return out
}

func blobStrings(st gc.Stats) []string { return digests(st.Blobs...) }
