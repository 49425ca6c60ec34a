package archive_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/images/archive"
	"github.com/berthd/berth/integration/testimages"
)

func (e *env) export(imgs []images.Image, opts archive.ExportOptions) []byte {
	e.t.Helper()
	var buf bytes.Buffer
	if err := archive.Export(e.ctx, e.cs, &buf, imgs, opts); err != nil {
		e.t.Fatalf("export: %v", err)
	}
	return buf.Bytes()
}

func (e *env) images() []images.Image {
	e.t.Helper()
	imgs, err := e.is.List(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	slices.SortFunc(imgs, func(a, b images.Image) int { return strings.Compare(a.Name, b.Name) })
	return imgs
}

func archiveFile(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	for _, en := range readEntries(t, data) {
		if en.hdr.Name == name {
			return en.data
		}
	}
	t.Fatalf("archive has no %s", name)
	return nil
}

type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func dockerManifest(t *testing.T, data []byte) []dockerEntry {
	t.Helper()
	var m []dockerEntry
	if err := json.Unmarshal(archiveFile(t, data, "manifest.json"), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// populated is an env holding a multi-layer zstd image, a multi-platform
// index (all platforms) and a busybox from a docker archive.
func populated(t *testing.T) *env {
	t.Helper()
	ml := build(t, testimages.MultiLayer, testimages.WithCompression(testimages.Zstd))
	mp := build(t, testimages.MultiPlatform)
	bb := build(t, testimages.Busybox, testimages.WithName("docker.io/berth/from-docker:v1"))
	e := newEnv(t)
	e.mustImport(ociArchive(t, testimages.WriteOptions{NestedIndex: true}, ml, mp), archive.ImportOptions{AllPlatforms: true})
	e.mustImport(dockerArchive(t, bb), archive.ImportOptions{})
	return e
}

func TestExportRoundTrip(t *testing.T) {
	t.Parallel()
	src := populated(t)
	imgs := src.images()
	data := src.export(imgs, archive.ExportOptions{AllPlatforms: true})
	if err := testimages.ValidateArchive(bytes.NewReader(data)); err != nil {
		t.Fatalf("exported archive is not valid: %v", err)
	}

	dst := newEnv(t)
	got := dst.mustImport(data, archive.ImportOptions{AllPlatforms: true})
	slices.SortFunc(got, func(a, b images.Image) int { return strings.Compare(a.Name, b.Name) })
	if len(got) != len(imgs) {
		t.Fatalf("reimported %d images, want %d", len(got), len(imgs))
	}
	for i := range imgs {
		if got[i].Name != imgs[i].Name || got[i].Target.Digest != imgs[i].Target.Digest || got[i].Target.MediaType != imgs[i].Target.MediaType {
			t.Errorf("image %d: %s → %s, want %s → %s", i, got[i].Name, got[i].Target.Digest, imgs[i].Name, imgs[i].Target.Digest)
		}
	}
	src.gc()
	dst.gc()
	if a, b := src.digests(), dst.digests(); !slices.Equal(a, b) {
		t.Errorf("content differs after the round trip: %d blobs, then %d", len(a), len(b))
	}

	// manifest.json names each image's host manifest by its familiar tag.
	tags := map[string]bool{}
	for _, en := range dockerManifest(t, data) {
		for _, tag := range en.RepoTags {
			tags[tag] = true
		}
		for _, p := range append([]string{en.Config}, en.Layers...) {
			archiveFile(t, data, p)
		}
	}
	for _, want := range []string{"berth/multilayer:latest", "berth/multiplatform:latest", "berth/from-docker:v1"} {
		if !tags[want] {
			t.Errorf("manifest.json lacks %s: %v", want, tags)
		}
	}
}

func TestExportCurrentPlatform(t *testing.T) {
	t.Parallel()
	mp := build(t, testimages.MultiPlatform)
	src := newEnv(t)
	src.mustImport(ociArchive(t, testimages.WriteOptions{}, mp), archive.ImportOptions{AllPlatforms: true})
	data := src.export(src.images(), archive.ExportOptions{})

	// The index is exported unchanged (so its digest stays), with only the
	// host platform's manifest and content.
	var blobs []digest.Digest
	for _, en := range readEntries(t, data) {
		if d, ok := strings.CutPrefix(en.hdr.Name, "blobs/sha256/"); ok && d != "" {
			blobs = append(blobs, digest.NewDigestFromEncoded(digest.SHA256, d))
		}
	}
	slices.Sort(blobs)
	if want := union(wantContent(t, mp, "")); !slices.Equal(blobs, want) {
		t.Errorf("exported blobs %v, want the host platform's %v", blobs, want)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(archiveFile(t, data, "index.json"), &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != mp.Target.Digest ||
		idx.Manifests[0].Annotations[images.AnnotationImageName] != testimages.MultiPlatformName ||
		idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "latest" {
		t.Errorf("index.json %+v", idx)
	}
	if m := dockerManifest(t, data); len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"berth/multiplatform:latest"}) {
		t.Errorf("manifest.json %+v", m)
	}

	dst := newEnv(t)
	if got := dst.mustImport(data, archive.ImportOptions{}); len(got) != 1 || got[0].Target.Digest != mp.Target.Digest {
		t.Errorf("reimported %+v", got)
	}
	dst = newEnv(t)
	if _, err := dst.importArchive(data, archive.ImportOptions{AllPlatforms: true}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("all platforms of a one-platform export: %v", err)
	}
	dst.checkClean()

	// Only what an image has can be exported for every platform.
	one := newEnv(t)
	one.mustImport(ociArchive(t, testimages.WriteOptions{}, mp), archive.ImportOptions{})
	one.gc()
	if err := archive.Export(one.ctx, one.cs, &bytes.Buffer{}, one.images(), archive.ExportOptions{AllPlatforms: true}); !errdefs.IsNotFound(err) {
		t.Errorf("all platforms of a one-platform image: %v", err)
	}
	if err := archive.Export(one.ctx, one.cs, &bytes.Buffer{}, one.images(), archive.ExportOptions{Platform: platforms.OnlyStrict(platforms.MustParse("linux/s390x"))}); !errdefs.IsNotFound(err) {
		t.Errorf("platform the image lacks: %v", err)
	}
}

func TestExportDeterministic(t *testing.T) {
	t.Parallel()
	e := populated(t)
	imgs := e.images()
	first := e.export(imgs, archive.ExportOptions{AllPlatforms: true})
	second := e.export(imgs, archive.ExportOptions{AllPlatforms: true})
	if !bytes.Equal(first, second) {
		t.Fatal("two exports of the same images differ")
	}
	entries := readEntries(t, first)
	var prev string
	for _, en := range entries {
		if en.hdr.Name <= prev {
			t.Errorf("entry %s after %s: not sorted", en.hdr.Name, prev)
		}
		prev = en.hdr.Name
		if !en.hdr.ModTime.Equal(time.Unix(0, 0)) || en.hdr.Uid != 0 || en.hdr.Gid != 0 {
			t.Errorf("entry %s: mtime %v uid %d gid %d", en.hdr.Name, en.hdr.ModTime, en.hdr.Uid, en.hdr.Gid)
		}
	}
	if entries[0].hdr.Name != "blobs/" || entries[0].hdr.Typeflag != tar.TypeDir {
		t.Errorf("first entry %s", entries[0].hdr.Name)
	}
}

// TestExportAsDockerArchive imports only the manifest.json part of an
// export, as an old `docker load` reads it.
func TestExportAsDockerArchive(t *testing.T) {
	t.Parallel()
	ml := build(t, testimages.MultiLayer)
	src := newEnv(t)
	src.mustImport(ociArchive(t, testimages.WriteOptions{}, ml), archive.ImportOptions{})
	data := edit(t, src.export(src.images(), archive.ExportOptions{}), func(en entry) []entry {
		if en.hdr.Name == "index.json" || en.hdr.Name == "oci-layout" {
			return nil
		}
		return []entry{en}
	})
	dst := newEnv(t)
	got := dst.mustImport(data, archive.ImportOptions{})
	if len(got) != 1 || got[0].Name != testimages.MultiLayerName {
		t.Fatalf("imported %+v", got)
	}
	m, err := images.ReadManifest(dst.ctx, dst.cs, got[0].Target)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := ml.Resolve("")
	if m.Config.Digest != orig.Manifest.Config.Digest {
		t.Errorf("config %s, want %s", m.Config.Digest, orig.Manifest.Config.Digest)
	}
	for i, l := range m.Layers {
		if l.Digest != orig.Manifest.Layers[i].Digest || l.MediaType != images.MediaTypeDockerSchema2LayerGzip {
			t.Errorf("layer %d: %s %s, want the gzip blob %s", i, l.Digest, l.MediaType, orig.Manifest.Layers[i].Digest)
		}
	}
}

func TestExportNames(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox)
	e := newEnv(t)
	e.mustImport(ociArchive(t, testimages.WriteOptions{}, bb), archive.ImportOptions{})
	target := bb.Target
	target.Platform = nil
	data := e.export([]images.Image{
		{Name: "docker.io/library/busybox:latest", Target: target},
		{Name: "localhost:5000/tools/bb:v2", Target: target},
		{Name: "docker.io/library/busybox@" + target.Digest.String(), Target: target},
		{Target: target},
	}, archive.ExportOptions{})
	var idx ocispec.Index
	if err := json.Unmarshal(archiveFile(t, data, "index.json"), &idx); err != nil {
		t.Fatal(err)
	}
	wantRef := []string{"latest", "v2", target.Digest.String(), ""}
	if len(idx.Manifests) != len(wantRef) {
		t.Fatalf("index.json lists %d images", len(idx.Manifests))
	}
	for i, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] != wantRef[i] || m.Digest != target.Digest {
			t.Errorf("entry %d: %+v", i, m)
		}
	}
	if idx.Manifests[3].Annotations != nil {
		t.Errorf("unnamed entry has annotations %v", idx.Manifests[3].Annotations)
	}
	m := dockerManifest(t, data)
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"busybox:latest", "localhost:5000/tools/bb:v2"}) {
		t.Errorf("manifest.json %+v", m)
	}
}

func TestExportRejects(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox)
	e := newEnv(t)
	e.mustImport(ociArchive(t, testimages.WriteOptions{}, bb), archive.ImportOptions{})
	r, _ := bb.Resolve("")
	for name, imgs := range map[string][]images.Image{
		"nothing":    nil,
		"a config":   {{Name: "x", Target: r.Manifest.Config}},
		"bad digest": {{Name: "x", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:zz", Size: 1}}},
	} {
		if err := archive.Export(e.ctx, e.cs, &bytes.Buffer{}, imgs, archive.ExportOptions{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("gone"), Size: 4}
	if err := archive.Export(e.ctx, e.cs, &bytes.Buffer{}, []images.Image{{Name: "x", Target: missing}}, archive.ExportOptions{}); !errdefs.IsNotFound(err) {
		t.Errorf("missing manifest: %v", err)
	}
}

// TestNonDistributableLayers builds an image with a foreign layer the
// store lacks (as after a pull): export leaves it out, and import accepts
// the archive without it.
func TestNonDistributableLayers(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox)
	r, _ := bb.Resolve("")
	e := newEnv(t)
	e.mustImport(ociArchive(t, testimages.WriteOptions{}, bb), archive.ImportOptions{})

	foreign := ocispec.Descriptor{MediaType: images.MediaTypeDockerSchema2LayerForeignGzip, Digest: digest.FromString("windows base"), Size: 1 << 30,
		URLs: []string{"https://example.invalid/base.tar.gz"}}
	cfg := r.Config
	cfg.RootFS.DiffIDs = append([]digest.Digest{digest.FromString("windows base tar")}, cfg.RootFS.DiffIDs...)
	cfgDesc := e.put(ocispec.MediaTypeImageConfig, cfg)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfgDesc, Layers: append([]ocispec.Descriptor{foreign}, r.Manifest.Layers...)}
	mDesc := e.put(ocispec.MediaTypeImageManifest, m)

	data := e.export([]images.Image{{Name: "docker.io/berth/foreign:v1", Target: mDesc}}, archive.ExportOptions{})
	for _, en := range readEntries(t, data) {
		if en.hdr.Name == blobName(foreign.Digest) {
			t.Error("the absent foreign layer is in the archive")
		}
	}
	dst := newEnv(t)
	got := dst.mustImport(data, archive.ImportOptions{})
	if len(got) != 1 || got[0].Target.Digest != mDesc.Digest {
		t.Fatalf("imported %+v", got)
	}
	if lbls := dst.labels(mDesc.Digest); lbls[images.LabelGCRefLayer+"0"] != r.Manifest.Layers[0].Digest.String() {
		t.Errorf("manifest labels %v: the busybox layer should be l.0, the foreign one unlabelled", lbls)
	}
}

// put stores v as JSON outside any lease (the test runs no collection
// before using it).
func (e *env) put(mt string, v any) ocispec.Descriptor {
	e.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	desc := descOf(data, mt)
	if err := content.WriteBlob(e.ctx, e.cs, "put-"+desc.Digest.String(), bytes.NewReader(data), desc); err != nil {
		e.t.Fatal(err)
	}
	return desc
}
