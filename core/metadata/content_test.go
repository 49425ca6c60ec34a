package metadata

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/berthd/berth/core/content"
)

func TestContentIsolatedByNamespace(t *testing.T) {
	e := newEnv(t, manualGC)
	a, b := nsCtx("a"), nsCtx("b")
	la, _ := e.lease(a)
	desc := e.write(la, []byte("only in a"), map[string]string{"team": "a"})

	if _, err := e.cs().Info(b, desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("info from another namespace: %v", err)
	}
	if _, err := e.cs().ReaderAt(b, desc); !errdefs.IsNotFound(err) {
		t.Errorf("read from another namespace: %v", err)
	}
	if _, err := e.cs().Update(b, content.Info{Digest: desc.Digest}); !errdefs.IsNotFound(err) {
		t.Errorf("update from another namespace: %v", err)
	}
	if err := e.cs().Delete(b, desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("delete from another namespace: %v", err)
	}
	var seen []digest.Digest
	e.cs().Walk(b, func(i content.Info) error { seen = append(seen, i.Digest); return nil })
	if len(seen) != 0 {
		t.Errorf("walk of b saw %v", seen)
	}
	info, err := e.cs().Info(a, desc.Digest)
	if err != nil || info.Size != desc.Size || info.Labels["team"] != "a" || info.CreatedAt.IsZero() {
		t.Errorf("info in a: %+v, %v", info, err)
	}
	if _, err := e.cs().Info(context.Background(), desc.Digest); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("info without namespace: %v", err)
	}
}

func TestSharedContentIsRecordedByWriter(t *testing.T) {
	e := newEnv(t, manualGC)
	a, b := nsCtx("a"), nsCtx("b")
	la, _ := e.lease(a)
	data := []byte("shared layer")
	desc := e.write(la, data, map[string]string{"team": "a"})

	lb, lease := e.lease(b)
	_, err := e.cs().Writer(lb, content.WithRef("other-ref"), content.WithDescriptor(desc))
	wantErr(t, "writer of a blob another namespace has", err, errdefs.ErrAlreadyExists)
	info, err := e.cs().Info(b, desc.Digest)
	if err != nil || info.Size != desc.Size || len(info.Labels) != 0 {
		t.Fatalf("b sees %+v, %v; want the blob without a's labels", info, err)
	}
	if !e.readable(b, desc) {
		t.Error("b cannot read the shared blob")
	}
	res, _ := e.db.Leases().ListResources(b, lease)
	if len(res) != 1 || res[0].ID != desc.Digest.String() || res[0].Type != "content" {
		t.Errorf("b's lease holds %v", res)
	}
	// Labels stay per namespace.
	if _, err := e.cs().Update(b, content.Info{Digest: desc.Digest, Labels: map[string]string{"team": "b"}}); err != nil {
		t.Fatal(err)
	}
	if ia, _ := e.cs().Info(a, desc.Digest); ia.Labels["team"] != "a" {
		t.Errorf("a's labels changed to %v", ia.Labels)
	}
	// A wrong size for an existing digest is refused, not recorded.
	bad := desc
	bad.Size++
	_, err = e.cs().Writer(nsCtx("c"), content.WithRef("x"), content.WithDescriptor(bad))
	wantErr(t, "writer with a size contradicting the stored blob", err, errdefs.ErrFailedPrecondition)
	if _, err := e.cs().Info(nsCtx("c"), desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("blob recorded in c after a refused writer: %v", err)
	}
}

func TestIngestRefsDoNotClashAcrossNamespaces(t *testing.T) {
	e := newEnv(t, manualGC)
	a, b := nsCtx("a"), nsCtx("b")
	wa, err := e.cs().Writer(a, content.WithRef("same"))
	if err != nil {
		t.Fatal(err)
	}
	wb, err := e.cs().Writer(b, content.WithRef("same"))
	if err != nil {
		t.Fatalf("writer with a ref another namespace holds: %v", err)
	}
	wa.Write([]byte("aaaa"))
	wb.Write([]byte("bb"))
	for ctx, want := range map[context.Context]int64{a: 4, b: 2} {
		st, err := e.cs().Status(ctx, "same")
		if err != nil || st.Ref != "same" || st.Offset != want {
			t.Errorf("status %+v, %v; want offset %d", st, err, want)
		}
		all, _ := e.cs().ListStatuses(ctx)
		if len(all) != 1 || all[0].Ref != "same" {
			t.Errorf("statuses %+v", all)
		}
	}
	if st, _ := wa.Status(); st.Ref != "same" {
		t.Errorf("writer status ref %q", st.Ref)
	}
	if _, err := e.cs().Writer(a, content.WithRef("same")); !errdefs.IsUnavailable(err) {
		t.Errorf("second writer on a held ref: %v", err)
	}
	wa.Close()
	if err := e.cs().Abort(a, "same"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs().Status(a, "same"); !errdefs.IsNotFound(err) {
		t.Errorf("status after abort: %v", err)
	}
	if err := wb.Commit(b, 2, digest.FromString("bb")); err != nil {
		t.Fatalf("commit in b after a's abort: %v", err)
	}
	if _, err := e.cs().Info(b, digest.FromString("bb")); err != nil {
		t.Error(err)
	}
	if _, err := e.cs().Status(b, "same"); !errdefs.IsNotFound(err) {
		t.Errorf("ingest left after commit: %v", err)
	}
}

func TestIngestResumesAfterClose(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	data := []byte("0123456789")
	desc := blobDesc(data)
	w, err := e.cs().Writer(ctx, content.WithRef("r"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:4])
	w.Close()
	e.reopen()
	w, err = e.cs().Writer(ctx, content.WithRef("r"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := w.Status(); st.Offset != 4 || st.Expected != desc.Digest {
		t.Fatalf("resumed status %+v", st)
	}
	if err := content.Copy(ctx, w, bytes.NewReader(data), desc.Size, desc.Digest, content.WithLabels(map[string]string{"k": "v"})); err != nil {
		t.Fatal(err)
	}
	if info, err := e.cs().Info(ctx, desc.Digest); err != nil || info.Labels["k"] != "v" {
		t.Errorf("after resumed commit: %+v, %v", info, err)
	}
}

func TestWriterErrors(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	_, err := e.cs().Writer(ctx)
	wantErr(t, "writer without ref", err, errdefs.ErrInvalidArgument)
	_, err = e.cs().Writer(ctx, content.WithRef("r"), content.WithDescriptor(blobDesc(nil)), func(o *content.WriterOpts) error {
		o.Desc.Digest = "sha256:nothex"
		return nil
	})
	wantErr(t, "writer with a bad digest", err, errdefs.ErrInvalidArgument)
	_, err = e.cs().Writer(context.Background(), content.WithRef("r"))
	wantErr(t, "writer without namespace", err, errdefs.ErrFailedPrecondition)
	_, err = e.cs().Writer(leaseCtx(ctx, "missing"), content.WithRef("r"))
	wantErr(t, "writer under a missing lease", err, errdefs.ErrNotFound)

	w, err := e.cs().Writer(ctx, content.WithRef("r"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abc"))
	err = w.Commit(ctx, 3, digest.FromString("xyz"))
	wantErr(t, "commit with the wrong digest", err, errdefs.ErrFailedPrecondition)
	if _, err := e.cs().Info(ctx, digest.FromString("abc")); !errdefs.IsNotFound(err) {
		t.Errorf("blob recorded after a failed commit: %v", err)
	}
	w, _ = e.cs().Writer(ctx, content.WithRef("r2"))
	err = w.Commit(ctx, 0, "", content.WithLabels(map[string]string{"": "x"}))
	wantErr(t, "commit with a bad label", err, errdefs.ErrInvalidArgument)
}

func TestCommitOfExistingBlobInNamespace(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	data := []byte("twice")
	e.write(ctx, data, nil)
	// A writer without a descriptor cannot know; its commit says so.
	w, err := e.cs().Writer(ctx, content.WithRef("again"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	err = w.Commit(ctx, int64(len(data)), "")
	wantErr(t, "commit of a blob the namespace has", err, errdefs.ErrAlreadyExists)
	if _, err := e.cs().Status(ctx, "again"); !errdefs.IsNotFound(err) {
		t.Errorf("ingest left: %v", err)
	}
}

func TestContentUpdateAndWalkFilters(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	one := e.write(ctx, []byte("one"), map[string]string{"x": "1", "a.b": "dotted"})
	two := e.write(ctx, []byte("two!"), map[string]string{"x": "2"})
	walk := func(fs ...string) []digest.Digest {
		var out []digest.Digest
		if err := e.cs().Walk(ctx, func(i content.Info) error { out = append(out, i.Digest); return nil }, fs...); err != nil {
			t.Fatalf("walk %q: %v", fs, err)
		}
		return out
	}
	if got := walk("labels.x==1"); !reflect.DeepEqual(got, []digest.Digest{one.Digest}) {
		t.Errorf("labels.x==1: %v", got)
	}
	if got := walk(`labels."a.b"`); !reflect.DeepEqual(got, []digest.Digest{one.Digest}) {
		t.Errorf("labels.a.b: %v", got)
	}
	if got := walk("size==4"); !reflect.DeepEqual(got, []digest.Digest{two.Digest}) {
		t.Errorf("size==4: %v", got)
	}
	if got := walk("digest==" + two.Digest.String()); len(got) != 1 {
		t.Errorf("digest filter: %v", got)
	}
	if err := e.cs().Walk(ctx, func(content.Info) error { return nil }, "labels.x=="); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v", err)
	}
	stop := errors.New("stop")
	if err := e.cs().Walk(ctx, func(content.Info) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("walk callback error: %v", err)
	}

	before, _ := e.cs().Info(ctx, one.Digest)
	got, err := e.cs().Update(ctx, content.Info{Digest: one.Digest, Labels: map[string]string{"y": "new", "x": "ignored"}}, "labels.y", "labels.a.b")
	if err != nil || !reflect.DeepEqual(got.Labels, map[string]string{"x": "1", "y": "new"}) {
		t.Errorf("field-path update: %v, %v", got.Labels, err)
	}
	if !got.CreatedAt.Equal(before.CreatedAt) || got.UpdatedAt.Before(before.UpdatedAt) || got.Size != 3 {
		t.Errorf("update changed more than labels: %+v", got)
	}
	if again, _ := e.cs().Info(ctx, one.Digest); !reflect.DeepEqual(again, got) {
		t.Errorf("info after update %+v, want %+v", again, got)
	}
	got, _ = e.cs().Update(ctx, content.Info{Digest: one.Digest, Labels: map[string]string{"z": "9"}})
	if !reflect.DeepEqual(got.Labels, map[string]string{"z": "9"}) {
		t.Errorf("update without paths: %v", got.Labels)
	}
	_, err = e.cs().Update(ctx, content.Info{Digest: one.Digest}, "size")
	wantErr(t, "update of size", err, errdefs.ErrInvalidArgument)
	_, err = e.cs().Update(ctx, content.Info{Digest: one.Digest, Labels: map[string]string{"k": string(make([]byte, 5000))}})
	wantErr(t, "oversized label", err, errdefs.ErrInvalidArgument)
}

func TestReaderReadsBackingBytes(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	data := bytes.Repeat([]byte("berth"), 1000)
	desc := e.write(ctx, data, nil)
	ra, err := e.cs().ReaderAt(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	got, _ := io.ReadAll(content.NewReader(ra))
	if !bytes.Equal(got, data) {
		t.Error("read back different bytes")
	}
}

func TestDeletedBlobStaysWhileAnotherNamespaceHasIt(t *testing.T) {
	e := newEnv(t, manualGC)
	a, b := nsCtx("a"), nsCtx("b")
	la, _ := e.lease(a)
	lb, _ := e.lease(b)
	desc := e.write(la, []byte("in both"), nil)
	e.write(lb, []byte("in both"), nil)
	if err := e.cs().Delete(a, desc.Digest); err != nil {
		t.Fatal(err)
	}
	// A scheduled run checks the deleted blob only.
	if st, err := e.db.sched.Run(context.Background()); err != nil || len(st.Blobs) != 0 {
		t.Fatalf("run after a's delete: %+v, %v", st, err)
	}
	if _, err := e.cs().Info(a, desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("a still sees the blob: %v", err)
	}
	if !e.readable(b, desc) {
		t.Fatal("b lost the blob a deleted")
	}
	if err := e.cs().Delete(b, desc.Digest); err != nil {
		t.Fatal(err)
	}
	st, err := e.db.sched.Run(context.Background())
	if err != nil || !reflect.DeepEqual(blobStrings(st), digests(desc.Digest)) || st.Reclaimed != desc.Size {
		t.Errorf("run after b's delete: %+v, %v", st, err)
	}
	if e.inBackend(desc.Digest) {
		t.Error("blob still stored after both namespaces deleted it")
	}
}
