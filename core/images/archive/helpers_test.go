package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/images/archive"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/require"
)

func needBusybox(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(testimages.BusyboxPath); err != nil {
		require.Missing(t, testimages.BusyboxPath+" (busybox-static)")
	}
}

// env is berth's real metadata store (namespaced content, images, leases
// and garbage collection) over a real local content store.
type env struct {
	t     testing.TB
	ctx   context.Context
	db    *metadata.DB
	blobs *local.Store
	cs    content.Store
	is    images.Store
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e, closeEnv := openEnv(t, t.TempDir())
	t.Cleanup(closeEnv)
	return e
}

// openEnv opens an env in dir; the caller closes it.
func openEnv(t testing.TB, dir string) (*env, func()) {
	t.Helper()
	blobs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	// Collections run only when a test asks.
	db, err := metadata.Open(filepath.Join(dir, "meta.db"), metadata.WithGCConfig(gc.Config{Delay: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	closeEnv := func() {
		if err := db.Close(); err != nil {
			t.Errorf("close metadata: %v", err)
		}
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	if err := db.Init(ctx, blobs, nil); err != nil {
		closeEnv()
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, db: db, blobs: blobs, cs: db.ContentStore(), is: db.Images()}, closeEnv
}

func (e *env) importArchive(data []byte, opts archive.ImportOptions) ([]images.Image, error) {
	return archive.Import(e.ctx, e.cs, e.is, e.db.Leases(), bytes.NewReader(data), opts)
}

func (e *env) mustImport(data []byte, opts archive.ImportOptions) []images.Image {
	e.t.Helper()
	imgs, err := e.importArchive(data, opts)
	if err != nil {
		e.t.Fatalf("import: %v", err)
	}
	return imgs
}

// gc runs a full garbage collection.
func (e *env) gc() {
	e.t.Helper()
	if _, err := e.db.GarbageCollect(context.Background()); err != nil {
		e.t.Fatalf("garbage collect: %v", err)
	}
}

// digests lists the blobs of the namespace.
func (e *env) digests() []digest.Digest {
	e.t.Helper()
	var out []digest.Digest
	if err := e.cs.Walk(e.ctx, func(info content.Info) error {
		out = append(out, info.Digest)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// backendBlobs lists what the backing store holds, in any namespace.
func (e *env) backendBlobs() []digest.Digest {
	e.t.Helper()
	var out []digest.Digest
	if err := e.blobs.Walk(context.Background(), func(info content.Info) error {
		out = append(out, info.Digest)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) labels(d digest.Digest) map[string]string {
	e.t.Helper()
	info, err := e.cs.Info(e.ctx, d)
	if err != nil {
		e.t.Fatalf("info %s: %v", d, err)
	}
	return info.Labels
}

// checkClean checks that a failed import left nothing: no image record,
// no lease, no ingest, and after garbage collection no blob at all.
func (e *env) checkClean() {
	e.t.Helper()
	if imgs, err := e.is.List(e.ctx); err != nil || len(imgs) != 0 {
		e.t.Errorf("image records left: %v, %v", imgs, err)
	}
	if ls, err := e.db.Leases().List(e.ctx); err != nil || len(ls) != 0 {
		e.t.Errorf("leases left: %v, %v", ls, err)
	}
	if st, err := e.cs.ListStatuses(e.ctx); err != nil || len(st) != 0 {
		e.t.Errorf("ingests left: %v, %v", st, err)
	}
	e.gc()
	if d := e.digests(); len(d) != 0 {
		e.t.Errorf("blobs left after garbage collection: %v", d)
	}
	if d := e.backendBlobs(); len(d) != 0 {
		e.t.Errorf("backing store keeps blobs after garbage collection: %v", d)
	}
}

// wantContent is the set of blobs an image keeps for a platform ("" for
// the host), as testimages resolves it: the index (if any), manifest,
// config and layers.
func wantContent(t testing.TB, img *testimages.Image, platform string) []digest.Digest {
	t.Helper()
	r, err := img.Resolve(platform)
	if err != nil {
		t.Fatal(err)
	}
	set := []digest.Digest{r.Descriptor.Digest, r.Manifest.Config.Digest}
	if img.Target.Digest != r.Descriptor.Digest {
		set = append(set, img.Target.Digest)
	}
	for _, l := range r.Manifest.Layers {
		set = append(set, l.Digest)
	}
	return set
}

func union(sets ...[]digest.Digest) []digest.Digest {
	var out []digest.Digest
	for _, s := range sets {
		for _, d := range s {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	slices.Sort(out)
	return out
}

func build(t testing.TB, f func(...testimages.Option) (*testimages.Image, error), opts ...testimages.Option) *testimages.Image {
	t.Helper()
	needBusybox(t)
	img, err := f(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func ociArchive(t testing.TB, opts testimages.WriteOptions, imgs ...*testimages.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := testimages.WriteOCIArchive(&buf, opts, imgs...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func dockerArchive(t testing.TB, imgs ...*testimages.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := testimages.WriteDockerArchive(&buf, imgs...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// entry is one tar entry, for crafting archives.
type entry struct {
	hdr  tar.Header
	data []byte
}

func readEntries(t testing.TB, data []byte) []entry {
	t.Helper()
	var out []entry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{*hdr, body})
	}
}

func writeEntries(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func file(name string, data []byte) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, data}
}

// edit rewrites the entries of an archive: fn returns the replacement for
// each entry (none to drop it).
func edit(t testing.TB, data []byte, fn func(entry) []entry) []byte {
	t.Helper()
	var out []entry
	for _, e := range readEntries(t, data) {
		out = append(out, fn(e)...)
	}
	return writeEntries(t, out)
}

func blobName(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// hostIs reports whether the host platform is p, for the tests whose
// expectations depend on it.
func hostIs(p string) bool {
	return platforms.Default().Match(platforms.MustParse(p))
}

func names(imgs []images.Image) []string {
	var out []string
	for _, img := range imgs {
		out = append(out, img.Name)
	}
	slices.Sort(out)
	return out
}

func descOf(data []byte, mt string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
}
