package metadata

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/snapshotters/native"
)

// graphFixture is a namespace holding everything a collection must keep
// (reached from an image, a container, gc.root labels, through several
// levels of gc.ref labels and snapshot parents) and garbage beside it.
type graphFixture struct {
	kept    []ocispec.Descriptor
	garbage []ocispec.Descriptor
	snaps   []string // snapshots that must stay
	junk    []string // snapshots that must go, children first
}

func ref(d ocispec.Descriptor) string { return d.Digest.String() }

func buildGraph(t *testing.T, e *env) graphFixture {
	t.Helper()
	ctx, l := e.lease(nsCtx("a"))
	var f graphFixture
	keep := func(d ocispec.Descriptor) ocispec.Descriptor { f.kept = append(f.kept, d); return d }
	sn := e.sn()

	// image -> index -> manifest -> config, layers, snapshot chain
	top := commitChain(t, ctx, sn, "chain", 3, nil)
	config := keep(e.write(ctx, []byte("config"), nil))
	l0 := keep(e.write(ctx, []byte("layer 0"), nil))
	l1 := keep(e.write(ctx, []byte("layer 1"), nil))
	manifest := keep(e.write(ctx, []byte("manifest"), map[string]string{
		"containerd.io/gc.ref.content.config":   ref(config),
		"containerd.io/gc.ref.content.l.0":      ref(l0),
		"containerd.io/gc.ref.content.l.1":      ref(l1),
		"containerd.io/gc.ref.snapshot.native":  top,
		"containerd.io/gc.ref.content.l.broken": "not-a-digest",
	}))
	index := keep(e.write(ctx, []byte("index"), map[string]string{"containerd.io/gc.ref.content.m.0": ref(manifest)}))
	index.MediaType = ocispec.MediaTypeImageIndex
	if _, err := e.db.Images().Create(ctx, images.Image{Name: "img", Target: index}); err != nil {
		t.Fatal(err)
	}
	f.snaps = append(f.snaps, "chain-1", "chain-2", "chain-3")

	// container -> its writable snapshot (on the chain) and a labelled blob
	extra := keep(e.write(ctx, []byte("container extra"), nil))
	if _, err := sn.Prepare(ctx, "ctr-rw", top); err != nil {
		t.Fatal(err)
	}
	c := newContainer("ctr")
	c.SnapshotKey = "ctr-rw"
	c.Labels = map[string]string{"containerd.io/gc.ref.content.extra": ref(extra)}
	if _, err := e.db.Containers().Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	f.snaps = append(f.snaps, "ctr-rw")

	// gc.root blob -> blob -> snapshot; gc.root snapshot -> blob
	if _, err := sn.Prepare(ctx, "rooted", ""); err != nil {
		t.Fatal(err)
	}
	child := keep(e.write(ctx, []byte("root child"), map[string]string{"containerd.io/gc.ref.snapshot.native.keep": "rooted"}))
	keep(e.write(ctx, []byte("root"), map[string]string{"containerd.io/gc.root": "2024-01-01T00:00:00Z", "containerd.io/gc.ref.content": ref(child)}))
	pinnedBlob := keep(e.write(ctx, []byte("pinned blob"), nil))
	if _, err := sn.Prepare(ctx, "pinned", "", snapshots.WithLabels(map[string]string{
		"containerd.io/gc.root": "x", "containerd.io/gc.ref.content/p": ref(pinnedBlob),
	})); err != nil {
		t.Fatal(err)
	}
	f.snaps = append(f.snaps, "rooted", "pinned")

	// garbage: a blob chain, a snapshot chain with an active child
	g2 := e.write(ctx, []byte("garbage 2"), nil)
	g1 := e.write(ctx, []byte("garbage 1"), map[string]string{"containerd.io/gc.ref.content": ref(g2)})
	f.garbage = append(f.garbage, g1, g2)
	commitChain(t, ctx, sn, "junk", 2, nil)
	if _, err := sn.Prepare(ctx, "junk-rw", "junk-2"); err != nil {
		t.Fatal(err)
	}
	f.junk = []string{"junk-rw", "junk-2", "junk-1"}

	if err := e.db.Leases().Delete(ctx, l); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f graphFixture) check(t *testing.T, e *env) {
	t.Helper()
	ctx := nsCtx("a")
	for _, d := range f.kept {
		if !e.readable(ctx, d) {
			t.Errorf("kept blob %s is not readable", d.Digest)
		}
	}
	for _, key := range f.snaps {
		if _, err := e.sn().Stat(ctx, key); err != nil {
			t.Errorf("kept snapshot %s: %v", key, err)
		}
	}
	if _, err := e.sn().Mounts(ctx, "ctr-rw"); err != nil {
		t.Errorf("mounts of the container's snapshot: %v", err)
	}
}

func TestCollectionKeepsWhatIsReachable(t *testing.T) {
	e := newEnv(t, manualGC)
	f := buildGraph(t, e)
	st := e.gc()
	if got, want := blobStrings(st), digests(f.garbage[0].Digest, f.garbage[1].Digest); !reflect.DeepEqual(got, want) {
		t.Errorf("blobs removed %q, want %q", got, want)
	}
	wantRecords := []string{"a/native/junk-1", "a/native/junk-2", "a/native/junk-rw"}
	if got := nodeKeys(st.Records, gc.ResourceSnapshot); !reflect.DeepEqual(got, wantRecords) {
		t.Errorf("snapshot records removed %q, want %q", got, wantRecords)
	}
	var backing []string
	for _, k := range st.Snapshots["native"] {
		backing = append(backing, k[strings.LastIndex(k, "/")+1:])
	}
	if !reflect.DeepEqual(backing, f.junk) {
		t.Errorf("backing snapshots removed %q, want %q (children first)", backing, f.junk)
	}
	if len(st.Dropped) != 0 || st.Marked == 0 || st.Pause <= 0 || st.Elapsed < st.Pause {
		t.Errorf("stats %+v", st)
	}
	f.check(t, e)

	e.reopen()
	if st := e.gc(); st.Removed() {
		t.Errorf("collection after reopen removed %+v", st)
	}
	f.check(t, e)

	// Without the image and the container, only the gc.root objects and
	// what they reference stay.
	ctx := nsCtx("a")
	if err := e.db.Images().Delete(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Containers().Delete(ctx, "ctr"); err != nil {
		t.Fatal(err)
	}
	st = e.gc()
	if n := len(st.Blobs); n != 6 {
		t.Errorf("removed %d blobs after the image went, want 6 (index, manifest, config, 2 layers, extra)", n)
	}
	if got := st.Snapshots["native"]; len(got) != 4 {
		t.Errorf("removed snapshots %q, want the chain and the container's", got)
	}
	for _, key := range []string{"rooted", "pinned"} {
		if _, err := e.sn().Stat(ctx, key); err != nil {
			t.Errorf("gc.root-held snapshot %s: %v", key, err)
		}
	}
}

func TestCrashLeftoversAreCleaned(t *testing.T) {
	e := newEnv(t, manualGC)
	bg := context.Background()
	ctx, _ := e.lease(nsCtx("a"))

	// A blob committed to the backing store whose record was never written.
	orphan := blobDesc([]byte("committed, not recorded"))
	if err := content.WriteBlob(bg, e.blobs, "a/99/orphan", bytes.NewReader([]byte("committed, not recorded")), orphan); err != nil {
		t.Fatal(err)
	}
	// A backing ingest no record names.
	w, err := e.blobs.Writer(bg, content.WithRef("a/98/lost"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	w.Close()
	// A record whose blob vanished.
	vanished := e.write(ctx, []byte("vanishes"), nil)
	if err := e.blobs.Delete(bg, vanished.Digest); err != nil {
		t.Fatal(err)
	}
	// A backing snapshot without a record, and a record without one.
	if _, err := e.native.Prepare(bg, "a/97/orphan", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn().Prepare(ctx, "lost-rw", ""); err != nil {
		t.Fatal(err)
	}
	rec, _ := e.sn().(*snapshotter).record(ctx, "lost-rw")
	if err := e.native.Remove(bg, rec.bkey); err != nil {
		t.Fatal(err)
	}

	// Nothing crashes on the dangling records before collection.
	if _, err := e.cs().Info(ctx, vanished.Digest); err != nil {
		t.Errorf("info of a record without its blob: %v", err)
	}
	if _, err := e.cs().ReaderAt(ctx, vanished); !errdefs.IsNotFound(err) {
		t.Errorf("read of a record without its blob: %v", err)
	}
	if _, err := e.sn().Mounts(ctx, "lost-rw"); !errdefs.IsNotFound(err) {
		t.Errorf("mounts of a record without its snapshot: %v", err)
	}

	// The first collection after opening walks every store.
	e.reopen()
	st, err := e.db.sched.Run(bg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(blobStrings(st), digests(orphan.Digest)) {
		t.Errorf("blobs removed %q", st.Blobs)
	}
	if !reflect.DeepEqual(st.Ingests, []string{"a/98/lost"}) {
		t.Errorf("ingests aborted %q", st.Ingests)
	}
	if got := st.Snapshots["native"]; !reflect.DeepEqual(got, []string{"a/97/orphan"}) {
		t.Errorf("snapshots removed %q", got)
	}
	dropped := append(nodeKeys(st.Dropped, gc.ResourceContent), nodeKeys(st.Dropped, gc.ResourceSnapshot)...)
	if want := []string{"a/" + vanished.Digest.String(), "a/native/lost-rw"}; !reflect.DeepEqual(dropped, want) {
		t.Errorf("dropped %q, want %q", dropped, want)
	}
	if _, err := e.cs().Info(ctx, vanished.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("dangling blob record after collection: %v", err)
	}
	if _, err := e.sn().Stat(ctx, "lost-rw"); !errdefs.IsNotFound(err) {
		t.Errorf("dangling snapshot record after collection: %v", err)
	}
	if st := e.gc(); st.Removed() {
		t.Errorf("second collection removed %+v", st)
	}
}

func TestStaleIngestsExpire(t *testing.T) {
	e := newEnv(t, manualGC, WithIngestExpiry(-time.Hour))
	ctx := nsCtx("a")
	w, err := e.cs().Writer(ctx, content.WithRef("stale"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abandoned"))
	w.Close()
	leased, _ := e.lease(ctx)
	w, err = e.cs().Writer(leased, content.WithRef("leased"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("kept"))
	w.Close()
	// A scheduled run, which aborts the backing ingests of the records it
	// removes without walking the store.
	st, err := e.db.sched.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := nodeKeys(st.Records, gc.ResourceIngest); !reflect.DeepEqual(got, []string{"a/stale"}) {
		t.Errorf("ingest records removed %q", got)
	}
	if len(st.Ingests) != 1 || !strings.HasSuffix(st.Ingests[0], "/stale") {
		t.Errorf("backing ingests aborted %q", st.Ingests)
	}
	if _, err := e.cs().Status(ctx, "stale"); !errdefs.IsNotFound(err) {
		t.Errorf("stale ingest: %v", err)
	}
	if s, err := e.cs().Status(ctx, "leased"); err != nil || s.Offset != 4 {
		t.Errorf("leased ingest: %+v, %v", s, err)
	}
}

func TestInFlightIngestSurvivesCollection(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	data := []byte("written while collecting")
	desc := blobDesc(data)
	w, err := e.cs().Writer(ctx, content.WithRef("busy"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:5])
	e.gc()
	w.Write(data[5:])
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatalf("commit after a collection: %v", err)
	}
	if !e.readable(ctx, desc) {
		t.Error("committed blob not readable")
	}
}

func TestConcurrentWritersAndCollections(t *testing.T) {
	e := newEnv(t, manualGC)
	const writers, perWriter = 4, 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written []ocispec.Descriptor
		leased  []leases.Lease
		done    = make(chan struct{})
	)
	shared := []byte("every writer writes this one too")
	for i := range writers {
		ctx, l := e.lease(nsCtx(fmt.Sprintf("ns%d", i%2)))
		leased = append(leased, l)
		wg.Go(func() {
			for j := range perWriter {
				data := []byte(fmt.Sprintf("writer %d blob %d", i, j))
				if j%5 == 0 {
					data = shared
				}
				desc := blobDesc(data)
				if err := content.WriteBlob(ctx, e.cs(), fmt.Sprintf("w%d-%d", i, j), bytes.NewReader(data), desc); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				if !e.readable(ctx, desc) {
					t.Errorf("blob %s collected right after its write", desc.Digest)
				}
				mu.Lock()
				written = append(written, desc)
				mu.Unlock()
			}
		})
	}
	var collections int
	var gcwg sync.WaitGroup
	gcwg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			// Unleased garbage for the collector to find.
			e.write(nsCtx("ns0"), []byte(fmt.Sprintf("garbage %d", collections)), nil)
			if _, err := e.db.GarbageCollect(context.Background()); err != nil {
				t.Errorf("collect: %v", err)
				return
			}
			collections++
		}
	})
	wg.Wait()
	close(done)
	gcwg.Wait()
	t.Logf("%d collections ran beside the writers", collections)
	for _, d := range written {
		found := false
		for _, ns := range []string{"ns0", "ns1"} {
			found = found || e.readable(nsCtx(ns), d)
		}
		if !found {
			t.Errorf("leased blob %s lost", d.Digest)
		}
	}
	for i, l := range leased {
		if err := e.db.Leases().Delete(nsCtx(fmt.Sprintf("ns%d", i%2)), l); err != nil {
			t.Fatal(err)
		}
	}
	e.gc()
	if err := e.blobs.Walk(context.Background(), func(i content.Info) error {
		t.Errorf("blob %s left after the leases went", i.Digest)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestScheduledCollectionAfterDeletion(t *testing.T) {
	e := newEnv(t, WithGCConfig(gc.Config{Delay: -1}))
	ctx, l := e.lease(nsCtx("a"))
	desc := e.write(ctx, []byte("collected in the background"), nil)
	if err := e.db.Leases().Delete(ctx, l); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for e.inBackend(desc.Digest) {
		if time.Now().After(deadline) {
			t.Fatal("no scheduled collection removed the blob")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, err := e.db.sched.Last(); err != nil || !st.Removed() {
		t.Errorf("last scheduled run: %+v, %v", st, err)
	}
}

func TestObjectCountsAndNamespaceDelete(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, l := e.lease(nsCtx("a"))
	e.write(ctx, []byte("x"), nil)
	commitChain(t, ctx, e.sn(), "s", 2, nil)
	e.db.Images().Create(ctx, images.Image{Name: "i", Target: target("t")})
	e.db.Containers().Create(ctx, newContainer("c"))
	counts, err := e.db.ObjectCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"content": 1, "snapshots": 2, "images": 1, "containers": 1, "leases": 1, "ingests": 0}
	if !reflect.DeepEqual(counts["a"], want) {
		t.Errorf("counts %v, want %v", counts["a"], want)
	}
	err = e.db.Namespaces().Delete(ctx, "a")
	wantErr(t, "delete of a namespace with objects", err, errdefs.ErrFailedPrecondition)
	e.db.Images().Delete(ctx, "i")
	e.db.Containers().Delete(ctx, "c")
	e.db.Leases().Delete(ctx, l)
	e.gc()
	if err := e.db.Namespaces().Delete(ctx, "a"); err != nil {
		t.Errorf("delete of a namespace emptied by collection: %v", err)
	}
}

func TestDiskUsage(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, _ := e.lease(nsCtx("a"))
	shared := e.write(ctx, []byte("shared layer."), nil) // 13 bytes
	own := e.write(ctx, []byte("own"), nil)
	m1 := e.write(ctx, []byte("m1"), map[string]string{"containerd.io/gc.ref.content.l.0": ref(shared), "containerd.io/gc.ref.content.l.1": ref(own)})
	m2 := e.write(ctx, []byte("m2"), map[string]string{"containerd.io/gc.ref.content.l.0": ref(shared)})
	loose := e.write(ctx, []byte("loose!"), nil)
	for name, d := range map[string]ocispec.Descriptor{"one": m1, "two": m2} {
		d.MediaType = ocispec.MediaTypeImageManifest
		if _, err := e.db.Images().Create(ctx, images.Image{Name: name, Target: d}); err != nil {
			t.Fatal(err)
		}
	}
	c := newContainer("uses-one")
	c.Image = "one"
	e.db.Containers().Create(ctx, c)

	sums, items, err := e.db.DiskUsage(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	total := shared.Size + own.Size + m1.Size + m2.Size + loose.Size
	want := []struct {
		typ                          string
		total, active, size, reclaim int64
	}{
		{"Images", 2, 1, total - loose.Size, m2.Size},
		{"Content", 5, 4, total, loose.Size},
	}
	for i, w := range want {
		s := sums[i]
		if s.Type != w.typ || s.Total != w.total || s.Active != w.active || s.Size != w.size || s.Reclaimable != w.reclaim {
			t.Errorf("summary %+v, want %+v", s, w)
		}
	}
	if len(items) != 2 || items[0].Name != "one" || items[0].Size != m1.Size+shared.Size+own.Size ||
		items[0].SharedSize != shared.Size || items[0].Users != 1 || items[1].Users != 0 {
		t.Errorf("items %+v", items)
	}
	if sums, _, _ := e.db.DiskUsage(ctx, "other", false); sums[1].Total != 0 {
		t.Errorf("usage of an empty namespace %+v", sums)
	}
}

func TestLabelReferences(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	refs, root := labelRefs("ns", map[string]string{
		"containerd.io/gc.ref.content":                d,
		"containerd.io/gc.ref.content.config":         d + "1",
		"containerd.io/gc.ref.content/m":              d + "2",
		"containerd.io/gc.ref.contentious":            d + "3",
		"containerd.io/gc.ref.snapshot.native":        "k1",
		"containerd.io/gc.ref.snapshot.overlayfs.l.0": "k2",
		"containerd.io/gc.ref.snapshot.native/rw":     "k3",
		"containerd.io/gc.ref.snapshot.":              "k4",
		"containerd.io/gc.ref.content.empty":          "",
		"containerd.io/gc.root":                       "",
		"unrelated":                                   d + "4",
	})
	var got []string
	for _, r := range refs {
		got = append(got, r.Type.String()+":"+r.Key)
	}
	slices.Sort(got)
	want := []string{
		"content:" + d, "content:" + d + "1", "content:" + d + "2",
		"snapshot:native/k1", "snapshot:native/k3",
		"snapshot:overlayfs.l.0/k2", "snapshot:overlayfs/k2",
	}
	if !root || !reflect.DeepEqual(got, want) {
		t.Errorf("refs %q root %v; want %q and root", got, root, want)
	}
}

func TestInitRules(t *testing.T) {
	db := openTest(t)
	if db.ContentStore() != nil || db.Snapshotter("native") != nil || len(db.Snapshotters()) != 0 {
		t.Error("stores before Init")
	}
	sn, err := native.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	err = db.Init(context.Background(), nil, map[string]snapshots.Snapshotter{"a/b": sn})
	wantErr(t, "snapshotter name with a slash", err, errdefs.ErrInvalidArgument)
	if err := db.Init(context.Background(), nil, map[string]snapshots.Snapshotter{"my.snap": sn}); err != nil {
		t.Fatal(err)
	}
	if db.ContentStore() != nil || db.Snapshotter("my.snap") == nil {
		t.Error("stores after Init without content")
	}
	err = db.Init(context.Background(), nil, nil)
	wantErr(t, "second Init", err, errdefs.ErrFailedPrecondition)
	// Collections work without a content store.
	if _, err := db.GarbageCollect(context.Background()); err != nil {
		t.Error(err)
	}
}
