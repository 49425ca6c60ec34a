package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func descOf(b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

func openWriter(t *testing.T, s *Store, ref string, desc ocispec.Descriptor) content.Writer {
	t.Helper()
	w, err := s.Writer(context.Background(), content.WithRef(ref), content.WithDescriptor(desc))
	if err != nil {
		t.Fatalf("Writer(%q): %v", ref, err)
	}
	return w
}

func mustWrite(t *testing.T, w io.Writer, b []byte) {
	t.Helper()
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
}

// commitBlob stores b through a fresh ingest and returns its descriptor.
func commitBlob(t *testing.T, s *Store, b []byte, labels map[string]string) ocispec.Descriptor {
	t.Helper()
	desc := descOf(b)
	w := openWriter(t, s, "ref-"+desc.Digest.Encoded(), desc)
	mustWrite(t, w, b)
	var opts []content.Opt
	if labels != nil {
		opts = append(opts, content.WithLabels(labels))
	}
	if err := w.Commit(context.Background(), desc.Size, desc.Digest, opts...); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return desc
}

func readAll(t *testing.T, s *Store, desc ocispec.Descriptor) []byte {
	t.Helper()
	ra, err := s.ReaderAt(context.Background(), desc)
	if err != nil {
		t.Fatalf("ReaderAt(%s): %v", desc.Digest, err)
	}
	defer ra.Close()
	if ra.Size() != desc.Size {
		t.Errorf("ReaderAt size %d, want %d", ra.Size(), desc.Size)
	}
	b, err := io.ReadAll(content.NewReader(ra))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func TestWriteCommitRead(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 3<<20+17)
	desc := descOf(data)

	w := openWriter(t, s, "layer", desc)
	mustWrite(t, w, data[:1000])
	st, err := s.Status(ctx, "layer")
	if err != nil {
		t.Fatal(err)
	}
	if st.Ref != "layer" || st.Offset != 1000 || st.Total != desc.Size || st.Expected != desc.Digest {
		t.Errorf("store Status = %+v", st)
	}
	if st.StartedAt.IsZero() || st.UpdatedAt.Before(st.StartedAt) {
		t.Errorf("status times: started %v updated %v", st.StartedAt, st.UpdatedAt)
	}
	mustWrite(t, w, data[1000:])
	ws, _ := w.Status()
	if ws.Offset != desc.Size {
		t.Errorf("writer offset %d, want %d", ws.Offset, desc.Size)
	}
	if w.Digest() != desc.Digest {
		t.Errorf("writer digest %s, want %s", w.Digest(), desc.Digest)
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after Commit: %v", err)
	}

	if got := readAll(t, s, desc); !bytes.Equal(got, data) {
		t.Fatal("read back different bytes")
	}
	info, err := s.Info(ctx, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != desc.Digest || info.Size != desc.Size || info.CreatedAt.IsZero() {
		t.Errorf("Info = %+v", info)
	}
	blob := filepath.Join(s.Root(), "blobs", "sha256", desc.Digest.Encoded())
	fi, err := os.Stat(blob)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("blob mode %v is writable", fi.Mode())
	}
	if _, err := s.Status(ctx, "layer"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Status after commit: %v, want not found", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Root(), "ingest")); len(entries) != 0 {
		t.Errorf("ingest folder not empty after commit: %v", entries)
	}
}

func TestCommitWithoutChecksAndEmptyBlob(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	w, err := s.Writer(ctx, content.WithRef("empty"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	empty := descOf(nil)
	info, err := s.Info(ctx, empty.Digest)
	if err != nil || info.Size != 0 {
		t.Fatalf("Info(empty) = %+v, %v", info, err)
	}
}

func TestWriterNeedsRef(t *testing.T) {
	s := newStore(t)
	_, err := s.Writer(context.Background())
	wantErr(t, err, errdefs.ErrInvalidArgument, "Writer without ref")
	_, err = s.Writer(context.Background(), content.WithRef("x"), content.WithDescriptor(ocispec.Descriptor{Size: -1}))
	wantErr(t, err, errdefs.ErrInvalidArgument, "Writer with negative size")
}

func TestAlreadyExists(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := []byte("hello, berth")
	desc := commitBlob(t, s, data, nil)

	_, err := s.Writer(ctx, content.WithRef("again"), content.WithDescriptor(desc))
	wantErr(t, err, errdefs.ErrAlreadyExists, "Writer for a committed digest")
	if _, err := s.Status(ctx, "again"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Writer that found the blob left an ingest: %v", err)
	}

	// Without a descriptor the duplicate is only found at commit, which
	// then removes the ingest.
	w := openWriter(t, s, "blind", ocispec.Descriptor{})
	mustWrite(t, w, data)
	err = w.Commit(ctx, desc.Size, desc.Digest)
	wantErr(t, err, errdefs.ErrAlreadyExists, "Commit of a duplicate")
	if _, err := s.Status(ctx, "blind"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("duplicate commit kept its ingest: %v", err)
	}
	if got := readAll(t, s, desc); !bytes.Equal(got, data) {
		t.Error("blob changed")
	}
}

func TestSecondWriterOnHeldRefIsUnavailable(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 4096)
	desc := descOf(data)

	w1 := openWriter(t, s, "shared", desc)
	mustWrite(t, w1, data[:100])
	_, err := s.Writer(ctx, content.WithRef("shared"), content.WithDescriptor(desc))
	wantErr(t, err, errdefs.ErrUnavailable, "second Writer")
	if !strings.Contains(err.Error(), `"shared"`) {
		t.Errorf("error %q does not name the ref", err)
	}
	// The refused writer must not have disturbed the first one.
	mustWrite(t, w1, data[100:])
	if err := w1.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatalf("first writer commit: %v", err)
	}
	// Released: the ref can be used again.
	w3 := openWriter(t, s, "shared", ocispec.Descriptor{})
	if st, _ := w3.Status(); st.Offset != 0 {
		t.Errorf("fresh ingest offset %d", st.Offset)
	}
	w3.Close()
}

func TestRaceForOneRef(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		writers []content.Writer
		busy    int
	)
	for range n {
		wg.Go(func() {
			w, err := s.Writer(ctx, content.WithRef("contended"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				writers = append(writers, w)
			case errors.Is(err, errdefs.ErrUnavailable):
				busy++
			default:
				t.Errorf("Writer: %v", err)
			}
		})
	}
	wg.Wait()
	if len(writers) != 1 || busy != n-1 {
		t.Fatalf("%d writers got the ref and %d were refused, want 1 and %d", len(writers), busy, n-1)
	}
	writers[0].Close()
}

func TestSecondStoreOnSameRootIsLockedOut(t *testing.T) {
	ctx := context.Background()
	s1 := newStore(t)
	s2, err := NewStore(s1.Root())
	if err != nil {
		t.Fatal(err)
	}
	w := openWriter(t, s1, "cross", ocispec.Descriptor{})
	mustWrite(t, w, []byte("abc"))
	_, err = s2.Writer(ctx, content.WithRef("cross"))
	wantErr(t, err, errdefs.ErrUnavailable, "Writer from a second store")
	if st, err := s2.Status(ctx, "cross"); err != nil || st.Offset != 3 {
		t.Errorf("second store Status = %+v, %v", st, err)
	}
	w.Close()
	w2 := openWriter(t, s2, "cross", ocispec.Descriptor{})
	if st, _ := w2.Status(); st.Offset != 3 {
		t.Errorf("second store resumed at %d, want 3", st.Offset)
	}
	w2.Close()
}

// TestResumeAfterRestart writes half a blob, drops the store without
// committing, opens a new store on the same root and finishes the blob.
func TestResumeAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(content.Writer)
	}{
		{"closed", func(w content.Writer) { w.Close() }},
		// A crashed daemon never calls Close: its descriptor just goes
		// away, taking the flock with it.
		{"crashed", func(w content.Writer) { w.(*writer).f.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			root := filepath.Join(t.TempDir(), "content")
			data := randomBytes(t, 1<<20+333)
			desc := descOf(data)
			half := len(data) / 2

			s1, err := NewStore(root)
			if err != nil {
				t.Fatal(err)
			}
			w := openWriter(t, s1, "resumable", desc)
			mustWrite(t, w, data[:half])
			started, _ := w.Status()
			tc.drop(w)

			s2, err := NewStore(root)
			if err != nil {
				t.Fatal(err)
			}
			st, err := s2.Status(ctx, "resumable")
			if err != nil {
				t.Fatal(err)
			}
			if st.Offset != int64(half) || st.Total != desc.Size || st.Expected != desc.Digest {
				t.Errorf("status after restart = %+v", st)
			}
			if !st.StartedAt.Equal(started.StartedAt) {
				t.Errorf("StartedAt changed: %v -> %v", started.StartedAt, st.StartedAt)
			}
			statuses, err := s2.ListStatuses(ctx)
			if err != nil || len(statuses) != 1 || statuses[0].Ref != "resumable" {
				t.Errorf("ListStatuses = %+v, %v", statuses, err)
			}

			w2 := openWriter(t, s2, "resumable", desc)
			ws, _ := w2.Status()
			if ws.Offset != int64(half) {
				t.Fatalf("resumed at %d, want %d", ws.Offset, half)
			}
			if w2.Digest() != digest.FromBytes(data[:half]) {
				t.Errorf("resumed digest %s is not the digest of the first half", w2.Digest())
			}
			mustWrite(t, w2, data[half:])
			if err := w2.Commit(ctx, desc.Size, desc.Digest); err != nil {
				t.Fatalf("commit after resume: %v", err)
			}
			if got := readAll(t, s2, desc); !bytes.Equal(got, data) {
				t.Fatal("resumed blob differs")
			}
		})
	}
}

func TestResumeWithDifferentDescriptorStartsOver(t *testing.T) {
	s := newStore(t)
	a := randomBytes(t, 1000)
	w := openWriter(t, s, "r", descOf(a))
	mustWrite(t, w, a[:500])
	w.Close()

	b := randomBytes(t, 2000)
	w = openWriter(t, s, "r", descOf(b))
	if st, _ := w.Status(); st.Offset != 0 || st.Total != 2000 || st.Expected != descOf(b).Digest {
		t.Errorf("ingest for another size was resumed: %+v", st)
	}
	mustWrite(t, w, b[:10])
	w.Close()

	// Same size, other digest.
	c := randomBytes(t, 2000)
	w = openWriter(t, s, "r", descOf(c))
	if st, _ := w.Status(); st.Offset != 0 {
		t.Errorf("ingest for another digest was resumed at %d", st.Offset)
	}
	w.Close()

	// A resume without a descriptor keeps what is there and learns nothing.
	w = openWriter(t, s, "r", ocispec.Descriptor{})
	mustWrite(t, w, []byte("xyz"))
	w.Close()
	w = openWriter(t, s, "r", ocispec.Descriptor{})
	if st, _ := w.Status(); st.Offset != 3 || st.Expected != descOf(c).Digest {
		t.Errorf("resume without descriptor: %+v", st)
	}
	w.Close()
}

func TestCommitMismatch(t *testing.T) {
	ctx := context.Background()
	data := randomBytes(t, 5000)
	desc := descOf(data)
	other := digest.FromString("something else")
	for _, tc := range []struct {
		name     string
		size     int64
		expected digest.Digest
		mention  []string
	}{
		{"size", desc.Size + 1, desc.Digest, []string{"5000", "5001"}},
		{"digest", desc.Size, other, []string{desc.Digest.String(), other.String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			w := openWriter(t, s, "bad", ocispec.Descriptor{})
			mustWrite(t, w, data)
			err := w.Commit(ctx, tc.size, tc.expected)
			wantErr(t, err, errdefs.ErrFailedPrecondition, "mismatched Commit")
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %s", err, m)
				}
			}
			if _, err := s.Info(ctx, desc.Digest); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("mismatched blob was stored: %v", err)
			}
			if _, err := s.Info(ctx, other); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("blob stored under the claimed digest: %v", err)
			}
			// The writer is closed, the ingest kept and the ref free.
			if _, err := w.Write([]byte("x")); !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Errorf("Write after failed Commit: %v", err)
			}
			st, err := s.Status(ctx, "bad")
			if err != nil || st.Offset != desc.Size {
				t.Fatalf("ingest after failed commit: %+v, %v", st, err)
			}
			w2 := openWriter(t, s, "bad", ocispec.Descriptor{})
			if err := w2.Commit(ctx, desc.Size, desc.Digest); err != nil {
				t.Fatalf("commit of the kept ingest: %v", err)
			}
		})
	}
}

func TestCommitRehashesForOtherAlgorithm(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 10000)
	want := digest.SHA512.FromBytes(data)
	w := openWriter(t, s, "sha512", ocispec.Descriptor{})
	mustWrite(t, w, data)
	if err := w.Commit(ctx, int64(len(data)), want); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "blobs", "sha512", want.Encoded())); err != nil {
		t.Fatal(err)
	}

	// A writer opened for sha512 hashes with it from the start.
	data2 := randomBytes(t, 100)
	desc := ocispec.Descriptor{Digest: digest.SHA512.FromBytes(data2), Size: 100}
	w = openWriter(t, s, "sha512-2", desc)
	mustWrite(t, w, data2)
	if w.Digest() != desc.Digest {
		t.Errorf("writer digest %s, want %s", w.Digest(), desc.Digest)
	}
	if err := w.Commit(ctx, 100, desc.Digest); err != nil {
		t.Fatal(err)
	}
}

func TestTruncate(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 3000)
	w := openWriter(t, s, "t", ocispec.Descriptor{})
	mustWrite(t, w, randomBytes(t, 2000))
	if err := w.Truncate(2001); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Truncate past the end: %v", err)
	}
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, data[:1500])
	mustWrite(t, w, randomBytes(t, 700))
	if err := w.Truncate(1500); err != nil {
		t.Fatal(err)
	}
	if w.Digest() != digest.FromBytes(data[:1500]) {
		t.Error("digest after Truncate(1500) is not the digest of the kept bytes")
	}
	mustWrite(t, w, data[1500:])
	desc := descOf(data)
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, desc); !bytes.Equal(got, data) {
		t.Fatal("blob differs after truncates")
	}
}

func TestAbort(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	wantErr(t, s.Abort(ctx, "nothing"), errdefs.ErrNotFound, "Abort of an unknown ref")

	w := openWriter(t, s, "a", ocispec.Descriptor{})
	mustWrite(t, w, []byte("abc"))
	w.Close()
	if err := s.Abort(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Status(ctx, "a"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Status after Abort: %v", err)
	}

	// Aborting under an open writer makes its commit fail, not resurrect.
	w = openWriter(t, s, "b", ocispec.Descriptor{})
	mustWrite(t, w, []byte("def"))
	if err := s.Abort(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	err := w.Commit(ctx, 3, digest.FromString("def"))
	wantErr(t, err, errdefs.ErrNotFound, "Commit after Abort")
	if _, err := s.Info(ctx, digest.FromString("def")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("aborted ingest was committed: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Root(), "ingest")); len(entries) != 0 {
		t.Errorf("ingest folder not empty: %v", entries)
	}
}

func TestListStatusesFilters(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	layer := descOf([]byte("layer"))
	for _, ref := range []string{"manifest-1", "layer-1", "layer-2"} {
		var desc ocispec.Descriptor
		if ref == "layer-2" {
			desc = layer
		}
		w := openWriter(t, s, ref, desc)
		w.Close()
	}
	// An ingest folder without its record is skipped, not an error.
	if err := os.Mkdir(filepath.Join(s.Root(), "ingest", "half-made"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"layer-1", "layer-2", "manifest-1"}},
		{[]string{"ref==layer-1"}, []string{"layer-1"}},
		{[]string{"ref~=^layer-"}, []string{"layer-1", "layer-2"}},
		{[]string{"ref==layer-1", "ref==manifest-1"}, []string{"layer-1", "manifest-1"}},
		{[]string{"expected==" + layer.Digest.String()}, []string{"layer-2"}},
		{[]string{"expected"}, []string{"layer-2"}},
		{[]string{"ref~=^layer-,expected"}, []string{"layer-2"}},
		{[]string{"ref==nope"}, nil},
	} {
		sts, err := s.ListStatuses(ctx, tc.filters...)
		if err != nil {
			t.Fatalf("ListStatuses(%q): %v", tc.filters, err)
		}
		var got []string
		for _, st := range sts {
			got = append(got, st.Ref)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("ListStatuses(%q) = %q, want %q", tc.filters, got, tc.want)
		}
	}
	_, err := s.ListStatuses(ctx, "ref==")
	wantErr(t, err, errdefs.ErrInvalidArgument, "ListStatuses with a bad filter")
}

func TestWalkFilters(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := commitBlob(t, s, []byte("aaaa"), map[string]string{"kind": "config", "com.example.key": "x"})
	b := commitBlob(t, s, []byte("bbbbbbbb"), map[string]string{"kind": "layer"})
	c := commitBlob(t, s, []byte("cc"), nil)
	// Foreign files are ignored: a bad name, an unknown algorithm, a folder.
	for _, p := range []string{"blobs/sha256/not-a-digest", "blobs/md5/" + strings.Repeat("0", 32)} {
		full := filepath.Join(s.Root(), p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(s.Root(), "blobs", "sha256", strings.Repeat("e", 64)), 0o755)

	name := map[digest.Digest]string{a.Digest: "a", b.Digest: "b", c.Digest: "c"}
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{nil, "abc"},
		{[]string{"digest==" + b.Digest.String()}, "b"},
		{[]string{"size==2"}, "c"},
		{[]string{"size~=^[48]$"}, "ab"},
		{[]string{"labels.kind"}, "ab"},
		{[]string{"labels.kind==layer"}, "b"},
		{[]string{`labels."com.example.key"==x`}, "a"},
		{[]string{"labels.kind!=layer"}, "ac"},
		{[]string{"labels.kind==config", "size==2"}, "ac"},
		{[]string{"labels.kind==config,size==2"}, ""},
	} {
		var got []string
		err := s.Walk(ctx, func(info content.Info) error {
			got = append(got, name[info.Digest])
			return nil
		}, tc.filters...)
		if err != nil {
			t.Fatalf("Walk(%q): %v", tc.filters, err)
		}
		slices.Sort(got)
		if strings.Join(got, "") != tc.want {
			t.Errorf("Walk(%q) = %q, want %q", tc.filters, got, tc.want)
		}
	}

	stop := errors.New("stop")
	calls := 0
	err := s.Walk(ctx, func(content.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk did not stop on the callback's error: %v after %d calls", err, calls)
	}
	err = s.Walk(ctx, func(content.Info) error { return nil }, "labels.=x")
	wantErr(t, err, errdefs.ErrInvalidArgument, "Walk with a bad filter")
}

func TestUpdateLabels(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	desc := commitBlob(t, s, []byte("labelled"), map[string]string{"a": "1", "b": "2"})
	info, err := s.Info(ctx, desc.Digest)
	if err != nil || info.Labels["a"] != "1" {
		t.Fatalf("labels from commit: %+v, %v", info, err)
	}
	created := info.CreatedAt

	steps := []struct {
		labels     map[string]string
		fieldpaths []string
		want       map[string]string
	}{
		{map[string]string{"a": "10", "b": "ignored"}, []string{"labels.a"}, map[string]string{"a": "10", "b": "2"}},
		{map[string]string{"c": "3"}, []string{"labels.c", "labels.b"}, map[string]string{"a": "10", "c": "3"}},
		{map[string]string{"z": "26"}, []string{"labels"}, map[string]string{"z": "26"}},
		{map[string]string{"y": "25"}, nil, map[string]string{"y": "25"}},
		{nil, nil, nil},
	}
	for i, st := range steps {
		got, err := s.Update(ctx, content.Info{Digest: desc.Digest, Labels: st.labels}, st.fieldpaths...)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if len(got.Labels) != len(st.want) {
			t.Errorf("step %d: labels %v, want %v", i, got.Labels, st.want)
		}
		for k, v := range st.want {
			if got.Labels[k] != v {
				t.Errorf("step %d: labels %v, want %v", i, got.Labels, st.want)
			}
		}
		if !got.CreatedAt.Equal(created) || got.UpdatedAt.Before(created) {
			t.Errorf("step %d: times created %v updated %v", i, got.CreatedAt, got.UpdatedAt)
		}
	}
	_, err = s.Update(ctx, content.Info{Digest: desc.Digest}, "size")
	wantErr(t, err, errdefs.ErrInvalidArgument, "Update of size")
	_, err = s.Update(ctx, content.Info{Digest: digest.FromString("absent")}, "labels")
	wantErr(t, err, errdefs.ErrNotFound, "Update of an absent blob")

	// The returned map is a copy.
	s.Update(ctx, content.Info{Digest: desc.Digest, Labels: map[string]string{"k": "v"}})
	info, _ = s.Info(ctx, desc.Digest)
	info.Labels["k"] = "changed"
	if again, _ := s.Info(ctx, desc.Digest); again.Labels["k"] != "v" {
		t.Error("Info returned the store's own label map")
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	desc := commitBlob(t, s, []byte("doomed"), map[string]string{"x": "y"})
	if err := s.Delete(ctx, desc.Digest); err != nil {
		t.Fatal(err)
	}
	_, err := s.Info(ctx, desc.Digest)
	wantErr(t, err, errdefs.ErrNotFound, "Info after Delete")
	_, err = s.ReaderAt(ctx, desc)
	wantErr(t, err, errdefs.ErrNotFound, "ReaderAt after Delete")
	wantErr(t, s.Delete(ctx, desc.Digest), errdefs.ErrNotFound, "second Delete")
	// Recommitting starts without the old labels.
	commitBlob(t, s, []byte("doomed"), nil)
	if info, _ := s.Info(ctx, desc.Digest); info.Labels != nil {
		t.Errorf("labels survived Delete: %v", info.Labels)
	}
}

// TestCraftedDigests feeds digests that would escape the root, or are
// merely malformed, to every call that takes one.
func TestCraftedDigests(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	s, err := NewStore(filepath.Join(parent, "content"))
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(parent, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	hex := strings.Repeat("a", 64)
	bad := []digest.Digest{
		"sha256:../../victim",
		"sha256:../../../" + digest.Digest(hex[:55]),
		digest.Digest("sha256:" + hex + "/.."),
		digest.Digest("sha256:" + strings.ToUpper(hex)),
		digest.Digest("sha256:" + hex[:63]),
		digest.Digest("sha256:" + hex + "a"),
		digest.Digest("md5:" + hex[:32]),
		digest.Digest("../sha256:" + hex),
		digest.Digest(".:" + hex),
		digest.Digest(hex),
		"sha256:",
	}
	for _, d := range bad {
		desc := ocispec.Descriptor{Digest: d, Size: 1}
		_, err := s.Info(ctx, d)
		wantErr(t, err, errdefs.ErrInvalidArgument, "Info("+string(d)+")")
		_, err = s.ReaderAt(ctx, desc)
		wantErr(t, err, errdefs.ErrInvalidArgument, "ReaderAt("+string(d)+")")
		wantErr(t, s.Delete(ctx, d), errdefs.ErrInvalidArgument, "Delete("+string(d)+")")
		_, err = s.Update(ctx, content.Info{Digest: d}, "labels")
		wantErr(t, err, errdefs.ErrInvalidArgument, "Update("+string(d)+")")
		_, err = s.Writer(ctx, content.WithRef("x"), content.WithDescriptor(desc))
		wantErr(t, err, errdefs.ErrInvalidArgument, "Writer("+string(d)+")")

		w := openWriter(t, s, "crafted", ocispec.Descriptor{})
		mustWrite(t, w, []byte("k"))
		err = w.Commit(ctx, 1, d)
		wantErr(t, err, errdefs.ErrInvalidArgument, "Commit("+string(d)+")")
		if err := s.Abort(ctx, "crafted"); err != nil {
			t.Fatal(err)
		}
	}
	// Refs are hashed, so path-like refs stay inside ingest/.
	w := openWriter(t, s, "../../victim", ocispec.Descriptor{})
	mustWrite(t, w, []byte("x"))
	w.Close()
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Fatalf("victim file changed: %q, %v", b, err)
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 2 {
		t.Errorf("store wrote outside its root: %v", entries)
	}
}

func TestReaderAtConcurrentReads(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 1<<20)
	desc := commitBlob(t, s, data, nil)
	ra, err := s.ReaderAt(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			off := int64(i) * 100000
			buf := make([]byte, 5000)
			if _, err := ra.ReadAt(buf, off); err != nil {
				t.Errorf("ReadAt(%d): %v", off, err)
			}
			if !bytes.Equal(buf, data[off:off+5000]) {
				t.Errorf("ReadAt(%d) returned other bytes", off)
			}
		})
	}
	wg.Wait()
}

// TestConcurrentCommitsOfOneDigest commits the same bytes through several
// refs at once: exactly one commit stores the blob, the rest are told it
// already exists, and no ingest is left.
func TestConcurrentCommitsOfOneDigest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := randomBytes(t, 256<<10)
	desc := descOf(data)
	const n = 8
	writers := make([]content.Writer, n)
	for i := range writers {
		// No descriptor, so every writer gets past the existence check.
		writers[i] = openWriter(t, s, "dup-"+string(rune('a'+i)), ocispec.Descriptor{})
		mustWrite(t, writers[i], data)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Go(func() { errs[i] = w.Commit(ctx, desc.Size, desc.Digest) })
	}
	wg.Wait()
	stored := 0
	for _, err := range errs {
		switch {
		case err == nil:
			stored++
		case !errors.Is(err, errdefs.ErrAlreadyExists):
			t.Errorf("Commit: %v", err)
		}
	}
	if stored != 1 {
		t.Errorf("%d commits stored the blob, want 1", stored)
	}
	if got := readAll(t, s, desc); !bytes.Equal(got, data) {
		t.Error("blob differs")
	}
	if sts, _ := s.ListStatuses(ctx); len(sts) != 0 {
		t.Errorf("ingests left: %+v", sts)
	}
}
