package metadata

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/leases"
)

func TestLeaseManager(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	lm := e.db.Leases()
	random, err := lm.Create(ctx)
	if err != nil || identifiers.Validate(random.ID) != nil || random.CreatedAt.IsZero() {
		t.Fatalf("lease with a random id: %+v, %v", random, err)
	}
	named, err := lm.Create(ctx, leases.WithID("pull-1"), leases.WithLabels(map[string]string{"tool": "berth"}), leases.WithExpiration(time.Hour))
	if err != nil || named.ID != "pull-1" || named.Labels[leases.LabelExpire] == "" {
		t.Fatalf("named lease: %+v, %v", named, err)
	}
	_, err = lm.Create(ctx, leases.WithID("pull-1"))
	wantErr(t, "duplicate lease", err, errdefs.ErrAlreadyExists)
	_, err = lm.Create(ctx, leases.WithID("bad id"))
	wantErr(t, "bad lease id", err, errdefs.ErrInvalidArgument)
	_, err = lm.Create(ctx, leases.WithID("/mnt/image root"))
	wantErr(t, "path lease id with a space", err, errdefs.ErrInvalidArgument)
	for _, id := range []string{"/tmp/mnt/target", "241458695--63I", "12_-x"} {
		// ids ctr uses: a mount target, generated ones
		l, err := lm.Create(ctx, leases.WithID(id))
		if err != nil {
			t.Fatalf("lease id %q: %v", id, err)
		}
		if err := lm.Delete(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	_, err = lm.Create(ctx, leases.WithLabels(map[string]string{leases.LabelExpire: "tomorrow"}))
	wantErr(t, "unreadable expiry", err, errdefs.ErrInvalidArgument)
	_, err = lm.Create(nsCtx(""))
	wantErr(t, "lease without namespace", err, errdefs.ErrFailedPrecondition)

	list := func(fs ...string) []string {
		ls, err := lm.List(ctx, fs...)
		if err != nil {
			t.Fatalf("list %q: %v", fs, err)
		}
		var ids []string
		for _, l := range ls {
			ids = append(ids, l.ID)
		}
		slices.Sort(ids)
		return ids
	}
	if got := list(); len(got) != 2 {
		t.Errorf("leases %v", got)
	}
	if got := list("labels.tool==berth"); !reflect.DeepEqual(got, []string{"pull-1"}) {
		t.Errorf("label filter: %v", got)
	}
	if got := list("id==" + random.ID); !reflect.DeepEqual(got, []string{random.ID}) {
		t.Errorf("id filter: %v", got)
	}
	if got, _ := lm.List(nsCtx("b")); len(got) != 0 {
		t.Errorf("leases of another namespace: %v", got)
	}

	resources := []leases.Resource{
		{ID: "sha256:" + strings.Repeat("0", 64), Type: "content"},
		{ID: "ingest-ref", Type: "ingests"},
		{ID: "key", Type: "snapshots/native"},
	}
	for _, r := range resources {
		if err := lm.AddResource(ctx, named, r); err != nil {
			t.Fatalf("add %+v: %v", r, err)
		}
	}
	got, _ := lm.ListResources(ctx, named)
	if len(got) != 3 {
		t.Errorf("resources %+v", got)
	}
	if err := lm.DeleteResource(ctx, named, resources[1]); err != nil {
		t.Fatal(err)
	}
	if got, _ := lm.ListResources(ctx, named); len(got) != 2 {
		t.Errorf("resources after delete %+v", got)
	}
	for _, bad := range []struct {
		r    leases.Resource
		want error
	}{
		{leases.Resource{ID: "x", Type: "images"}, errdefs.ErrNotImplemented},
		{leases.Resource{ID: "not-a-digest", Type: "content"}, errdefs.ErrInvalidArgument},
		{leases.Resource{ID: "k", Type: "snapshots"}, errdefs.ErrInvalidArgument},
		{leases.Resource{ID: "", Type: "ingests"}, errdefs.ErrInvalidArgument},
	} {
		wantErr(t, "add resource "+bad.r.Type, lm.AddResource(ctx, named, bad.r), bad.want)
	}
	wantErr(t, "add to a missing lease", lm.AddResource(ctx, leases.Lease{ID: "nope"}, resources[1]), errdefs.ErrNotFound)
	_, err = lm.ListResources(ctx, leases.Lease{ID: "nope"})
	wantErr(t, "resources of a missing lease", err, errdefs.ErrNotFound)

	if err := lm.Delete(ctx, named); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "second delete", lm.Delete(ctx, named), errdefs.ErrNotFound)
}

func TestLeaseProtectsBlobUntilDeleted(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, l := e.lease(nsCtx("a"))
	desc := e.write(ctx, []byte("leased"), nil)
	if st := e.gc(); len(st.Records) != 0 || len(st.Blobs) != 0 {
		t.Fatalf("collection under a lease removed %+v", st)
	}
	if !e.readable(ctx, desc) {
		t.Fatal("leased blob not readable after collection")
	}
	if err := e.db.Leases().Delete(ctx, l); err != nil {
		t.Fatal(err)
	}
	st := e.gc()
	if got := nodeKeys(st.Records, gc.ResourceContent); !reflect.DeepEqual(got, []string{"a/" + desc.Digest.String()}) {
		t.Errorf("records removed %v", got)
	}
	if !reflect.DeepEqual(blobStrings(st), digests(desc.Digest)) || st.Reclaimed != desc.Size {
		t.Errorf("blobs removed %v, reclaimed %d", st.Blobs, st.Reclaimed)
	}
	if e.inBackend(desc.Digest) {
		t.Error("blob still in the backing store")
	}
}

func TestSynchronousLeaseDelete(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, l := e.lease(nsCtx("a"))
	desc := e.write(ctx, []byte("gone when delete returns"), nil)
	if err := e.db.Leases().Delete(ctx, l, leases.SynchronousDelete); err != nil {
		t.Fatal(err)
	}
	if e.inBackend(desc.Digest) {
		t.Error("blob still in the backing store after a synchronous delete")
	}
}

func TestExpiredLeaseIsCollected(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, l := e.lease(nsCtx("a"), leases.WithExpiration(-time.Minute))
	live, _ := e.lease(nsCtx("a"), leases.WithExpiration(time.Hour))
	desc := e.write(ctx, []byte("held by an expired lease"), nil)
	kept := e.write(live, []byte("held by a live lease"), nil)
	st := e.gc()
	if got := nodeKeys(st.Records, gc.ResourceLease); !reflect.DeepEqual(got, []string{"a/" + l.ID}) {
		t.Errorf("leases removed %v", got)
	}
	if !reflect.DeepEqual(blobStrings(st), digests(desc.Digest)) {
		t.Errorf("blobs removed %v", st.Blobs)
	}
	if !e.readable(live, kept) {
		t.Error("blob of the live lease was collected")
	}
}

func TestFlatLeaseHoldsOnlyItsResources(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx, full := e.lease(nsCtx("a"))
	layer := e.write(ctx, []byte("layer"), nil)
	manifest := e.write(ctx, []byte("manifest"), map[string]string{"containerd.io/gc.ref.content.l.0": layer.Digest.String()})
	flat, err := e.db.Leases().Create(ctx, leases.WithLabels(map[string]string{leases.LabelFlat: "true"}))
	if err != nil {
		t.Fatal(err)
	}
	e.db.Leases().AddResource(ctx, flat, leases.Resource{ID: manifest.Digest.String(), Type: "content"})
	if err := e.db.Leases().Delete(ctx, full); err != nil {
		t.Fatal(err)
	}
	st := e.gc()
	if !reflect.DeepEqual(blobStrings(st), digests(layer.Digest)) {
		t.Errorf("flat lease: removed %v, want only the layer", st.Blobs)
	}
	if !e.readable(ctx, manifest) {
		t.Error("the flat lease's own blob was collected")
	}
}
