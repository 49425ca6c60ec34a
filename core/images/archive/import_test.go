package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/images/archive"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/integration/testimages"
)

// checkManifestLabels checks the GC labels a manifest needs.
func checkManifestLabels(t *testing.T, e *env, manifest digest.Digest, m ocispec.Manifest) {
	t.Helper()
	lbls := e.labels(manifest)
	if lbls[images.LabelGCRefConfig] != m.Config.Digest.String() {
		t.Errorf("manifest %s: config label %q, want %s", manifest, lbls[images.LabelGCRefConfig], m.Config.Digest)
	}
	for i, l := range m.Layers {
		if k := fmt.Sprintf("%s%d", images.LabelGCRefLayer, i); lbls[k] != l.Digest.String() {
			t.Errorf("manifest %s: label %s = %q, want %s", manifest, k, lbls[k], l.Digest)
		}
	}
}

func TestImportOCI(t *testing.T) {
	t.Parallel()
	for _, c := range []testimages.Compression{testimages.Gzip, testimages.Zstd, testimages.Uncompressed} {
		for _, nested := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s nested=%v", c, nested), func(t *testing.T) {
				t.Parallel()
				name := fmt.Sprintf("docker.io/berth/ml-%s:v1", c)
				img := build(t, testimages.MultiLayer, testimages.WithCompression(c), testimages.WithName(name))
				e := newEnv(t)
				imgs := e.mustImport(ociArchive(t, testimages.WriteOptions{NestedIndex: nested}, img), archive.ImportOptions{})

				want := wantContent(t, img, "")
				target := img.Target
				if nested {
					idx, err := testimages.BuildIndex(name, []*testimages.Image{img}, nil)
					if err != nil {
						t.Fatal(err)
					}
					target = idx.Target
					want = append(want, target.Digest)
					if got := e.labels(target.Digest)[images.LabelGCRefManifest+"0"]; got != img.Target.Digest.String() {
						t.Errorf("nested index label m.0 = %q, want %s", got, img.Target.Digest)
					}
				}
				if len(imgs) != 1 || imgs[0].Name != name || imgs[0].Target.Digest != target.Digest || imgs[0].Target.MediaType != target.MediaType {
					t.Fatalf("imported %+v, want %s → %s", imgs, name, target.Digest)
				}
				if got, err := e.is.Get(e.ctx, name); err != nil || got.Target.Digest != target.Digest {
					t.Fatalf("record %+v, %v", got, err)
				}
				r, err := img.Resolve("")
				if err != nil {
					t.Fatal(err)
				}
				checkManifestLabels(t, e, img.Target.Digest, r.Manifest)
				e.gc()
				if got := e.digests(); !slices.Equal(got, union(want)) {
					t.Errorf("after gc the store holds %v, want %v", got, union(want))
				}
				diffIDs, err := images.RootFS(e.ctx, e.cs, r.Manifest.Config)
				if err != nil || !slices.Equal(diffIDs, r.Config.RootFS.DiffIDs) {
					t.Errorf("diff IDs %v, %v", diffIDs, err)
				}
			})
		}
	}
}

func TestImportCompressedTarball(t *testing.T) {
	t.Parallel()
	img := build(t, testimages.Busybox)
	plain := ociArchive(t, testimages.WriteOptions{}, img)
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(plain)
	gw.Close()
	zw, err := zstd.NewWriter(&zs)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(plain)
	zw.Close()
	for name, data := range map[string][]byte{"gzip": gz.Bytes(), "zstd": zs.Bytes()} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			imgs := e.mustImport(data, archive.ImportOptions{})
			if len(imgs) != 1 || imgs[0].Name != testimages.BusyboxName || imgs[0].Target.Digest != img.Target.Digest {
				t.Fatalf("imported %+v", imgs)
			}
		})
	}
}

func TestImportDocker(t *testing.T) {
	t.Parallel()
	const mlName, bbName = "docker.io/berth/multilayer-docker:latest", "docker.io/berth/busybox-docker:v1"
	ml := build(t, testimages.MultiLayer, testimages.WithName(mlName), testimages.WithCompression(testimages.Zstd))
	bb := build(t, testimages.Busybox, testimages.WithName(bbName))
	e := newEnv(t)
	imgs := e.mustImport(dockerArchive(t, ml, bb), archive.ImportOptions{})
	if got := names(imgs); !slices.Equal(got, []string{bbName, mlName}) {
		t.Fatalf("names %v", got)
	}
	var want []digest.Digest
	for _, src := range []*testimages.Image{ml, bb} {
		img, err := e.is.Get(e.ctx, src.Name)
		if err != nil {
			t.Fatal(err)
		}
		if img.Target.MediaType != images.MediaTypeDockerSchema2Manifest {
			t.Errorf("%s: target media type %s", src.Name, img.Target.MediaType)
		}
		m, err := images.ReadManifest(e.ctx, e.cs, img.Target)
		if err != nil {
			t.Fatal(err)
		}
		orig, err := src.Resolve("")
		if err != nil {
			t.Fatal(err)
		}
		// The config is the original; the layers are the uncompressed tars,
		// named by their diff IDs.
		if m.MediaType != images.MediaTypeDockerSchema2Manifest || m.Config.Digest != orig.Manifest.Config.Digest || m.Config.MediaType != images.MediaTypeDockerSchema2Config {
			t.Errorf("%s: manifest %+v", src.Name, m)
		}
		if len(m.Layers) != len(orig.Config.RootFS.DiffIDs) {
			t.Fatalf("%s: %d layers", src.Name, len(m.Layers))
		}
		for i, l := range m.Layers {
			if l.Digest != orig.Config.RootFS.DiffIDs[i] || l.MediaType != images.MediaTypeDockerSchema2Layer {
				t.Errorf("%s: layer %d %s (%s), want %s", src.Name, i, l.Digest, l.MediaType, orig.Config.RootFS.DiffIDs[i])
			}
		}
		p, err := images.Platforms(e.ctx, e.cs, img.Target)
		if err != nil || len(p) != 1 || !platforms.Default().Match(p[0]) {
			t.Errorf("%s: platforms %v, %v", src.Name, p, err)
		}
		checkManifestLabels(t, e, img.Target.Digest, m)
		want = append(want, img.Target.Digest, m.Config.Digest)
		for _, l := range m.Layers {
			want = append(want, l.Digest)
		}
	}
	// Legacy per-layer json files and the repositories file are gone after
	// collection; the content is exactly the two images'.
	e.gc()
	if got := e.digests(); !slices.Equal(got, union(want)) {
		t.Errorf("after gc %v, want %v", got, union(want))
	}
}

// TestImportDockerLinks imports a `docker save` archive whose second
// image reaches a shared layer through a symlink, as Docker writes them.
func TestImportDockerLinks(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox)
	data := edit(t, dockerArchive(t, bb), func(en entry) []entry {
		if en.hdr.Name != "manifest.json" {
			return []entry{en}
		}
		var m []map[string]any
		if err := json.Unmarshal(en.data, &m); err != nil {
			t.Fatal(err)
		}
		orig := m[0]["Layers"].([]any)[0].(string)
		second := map[string]any{"Config": m[0]["Config"], "RepoTags": []string{"linked:v2"}, "Layers": []string{"alias/layer.tar"}}
		m = append(m, second)
		js, _ := json.Marshal(m)
		link := entry{hdr: en.hdr, data: nil}
		link.hdr.Typeflag, link.hdr.Name, link.hdr.Linkname = '2', "alias/layer.tar", "../"+orig
		return []entry{file("manifest.json", js), link}
	})
	e := newEnv(t)
	imgs := e.mustImport(data, archive.ImportOptions{})
	if got := names(imgs); !slices.Equal(got, []string{testimages.BusyboxName, "docker.io/library/linked:v2"}) {
		t.Fatalf("names %v", got)
	}
	if imgs[0].Target.Digest != imgs[1].Target.Digest {
		t.Errorf("the linked layer makes a different manifest: %s, %s", imgs[0].Target.Digest, imgs[1].Target.Digest)
	}
}

func TestImportDockerRepositoriesFallback(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox, testimages.WithName("docker.io/berth/fallback:v3"))
	data := edit(t, dockerArchive(t, bb), func(en entry) []entry {
		if en.hdr.Name == "manifest.json" {
			en.data = bytes.Replace(en.data, []byte(`"RepoTags":["berth/fallback:v3"]`), []byte(`"RepoTags":null`), 1)
		}
		return []entry{en}
	})
	if !bytes.Contains(data, []byte(`"RepoTags":null`)) {
		t.Fatal("test archive not edited")
	}
	e := newEnv(t)
	if got := names(e.mustImport(data, archive.ImportOptions{})); !slices.Equal(got, []string{"docker.io/berth/fallback:v3"}) {
		t.Errorf("names %v", got)
	}
}

// TestImportDotSlashNames imports an archive made by `tar -C layout .`:
// a "./" entry first and every name starting with "./".
func TestImportDotSlashNames(t *testing.T) {
	t.Parallel()
	img := build(t, testimages.Busybox)
	entries := []entry{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}}}
	for _, en := range readEntries(t, ociArchive(t, testimages.WriteOptions{}, img)) {
		en.hdr.Name = "./" + en.hdr.Name
		entries = append(entries, en)
	}
	e := newEnv(t)
	imgs := e.mustImport(writeEntries(t, entries), archive.ImportOptions{})
	if len(imgs) != 1 || imgs[0].Target.Digest != img.Target.Digest {
		t.Fatalf("imported %+v", imgs)
	}
}

// TestImportDocker25 imports an OCI layout that also has manifest.json
// (what `docker save` writes since Docker 25): it is read as OCI.
func TestImportDocker25(t *testing.T) {
	t.Parallel()
	img := build(t, testimages.MultiLayer)
	e := newEnv(t)
	imgs := e.mustImport(ociArchive(t, testimages.WriteOptions{DockerManifest: true}, img), archive.ImportOptions{})
	if len(imgs) != 1 || imgs[0].Target.Digest != img.Target.Digest || imgs[0].Target.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("imported %+v", imgs)
	}
}

// onlyHost drops the blobs of other platforms from an archive of img, as
// `docker save` of a multi-platform image pulled for one platform does.
func onlyHost(t *testing.T, data []byte, img *testimages.Image) []byte {
	t.Helper()
	keep := wantContent(t, img, "")
	return edit(t, data, func(en entry) []entry {
		if strings.HasPrefix(en.hdr.Name, "blobs/sha256/") && !slices.Contains(keep, digest.NewDigestFromEncoded(digest.SHA256, path.Base(en.hdr.Name))) {
			return nil
		}
		return []entry{en}
	})
}

func TestImportMultiPlatform(t *testing.T) {
	t.Parallel()
	mp := build(t, testimages.MultiPlatform)
	full := ociArchive(t, testimages.WriteOptions{}, mp)
	manifests, err := testimages.Children(mp.Target, mp.Blobs[mp.Target.Digest])
	if err != nil {
		t.Fatal(err)
	}
	host := wantContent(t, mp, "")

	t.Run("current platform", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		imgs := e.mustImport(full, archive.ImportOptions{})
		if len(imgs) != 1 || imgs[0].Target.Digest != mp.Target.Digest {
			t.Fatalf("imported %+v", imgs)
		}
		r, _ := mp.Resolve("")
		lbls := e.labels(mp.Target.Digest)
		if lbls[images.LabelGCRefManifest+"0"] != r.Descriptor.Digest.String() || lbls[images.LabelGCRefManifest+"1"] != "" {
			t.Errorf("index labels %v: want only m.0 = %s", lbls, r.Descriptor.Digest)
		}
		e.gc()
		if got := e.digests(); !slices.Equal(got, union(host)) {
			t.Errorf("after gc %v, want the host platform's %v", got, union(host))
		}
	})

	t.Run("all platforms", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.mustImport(full, archive.ImportOptions{AllPlatforms: true})
		lbls := e.labels(mp.Target.Digest)
		for i, m := range manifests {
			if k := fmt.Sprintf("%s%d", images.LabelGCRefManifest, i); lbls[k] != m.Digest.String() {
				t.Errorf("index label %s = %q, want %s", k, lbls[k], m.Digest)
			}
		}
		e.gc()
		var all []digest.Digest
		for d := range mp.Blobs {
			all = append(all, d)
		}
		if got := e.digests(); !slices.Equal(got, union(all)) {
			t.Errorf("after gc %d blobs, want all %d", len(got), len(all))
		}
	})

	t.Run("other platform", func(t *testing.T) {
		t.Parallel()
		other := "linux/arm64"
		if hostIs(other) {
			other = "linux/amd64"
		}
		e := newEnv(t)
		e.mustImport(full, archive.ImportOptions{Platform: platforms.OnlyStrict(platforms.MustParse(other))})
		e.gc()
		if got := e.digests(); !slices.Equal(got, union(wantContent(t, mp, other))) {
			t.Errorf("after gc %v, want %s's", got, other)
		}
	})

	t.Run("archive with the host platform only", func(t *testing.T) {
		t.Parallel()
		partial := onlyHost(t, full, mp)
		e := newEnv(t)
		e.mustImport(partial, archive.ImportOptions{})
		e.gc()
		if got := e.digests(); !slices.Equal(got, union(host)) {
			t.Errorf("after gc %v", got)
		}

		e = newEnv(t)
		_, err := e.importArchive(partial, archive.ImportOptions{AllPlatforms: true})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not in the archive") {
			t.Fatalf("all platforms of a partial archive: %v", err)
		}
		e.checkClean()
	})

	t.Run("no manifest for the platform", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		_, err := e.importArchive(full, archive.ImportOptions{Platform: platforms.OnlyStrict(platforms.MustParse("linux/s390x"))})
		if !errdefs.IsNotFound(err) {
			t.Fatalf("s390x: %v", err)
		}
		e.checkClean()
	})

	t.Run("single manifest of another platform", func(t *testing.T) {
		t.Parallel()
		// A plain manifest is imported whatever its platform, as docker
		// load does.
		e := newEnv(t)
		arm := manifests[1]
		imgs := e.mustImport(ociArchive(t, testimages.WriteOptions{}, &testimages.Image{Name: "docker.io/berth/arm:v1", Target: arm, Blobs: mp.Blobs}),
			archive.ImportOptions{Platform: platforms.OnlyStrict(platforms.MustParse("linux/s390x"))})
		if len(imgs) != 1 || imgs[0].Target.Digest != arm.Digest {
			t.Fatalf("imported %+v", imgs)
		}
	})
}

// withoutContainerdNames strips io.containerd.image.name from index.json,
// leaving the OCI ref.name, optionally replaced.
func withoutContainerdNames(t *testing.T, data []byte, refName string) []byte {
	t.Helper()
	return edit(t, data, func(en entry) []entry {
		if en.hdr.Name != "index.json" {
			return []entry{en}
		}
		var idx ocispec.Index
		if err := json.Unmarshal(en.data, &idx); err != nil {
			t.Fatal(err)
		}
		for i := range idx.Manifests {
			delete(idx.Manifests[i].Annotations, images.AnnotationImageName)
			if refName != "" {
				idx.Manifests[i].Annotations[ocispec.AnnotationRefName] = refName
			}
		}
		js, _ := json.Marshal(idx)
		return []entry{file("index.json", js)}
	})
}

func TestImportNames(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox)
	data := ociArchive(t, testimages.WriteOptions{}, bb)
	tagOnly := withoutContainerdNames(t, data, "")
	fullRef := withoutContainerdNames(t, data, "busybox:1.36")
	dgst := bb.Target.Digest
	for _, c := range []struct {
		name string
		data []byte
		opts archive.ImportOptions
		want []string
	}{
		{"containerd name", data, archive.ImportOptions{}, []string{testimages.BusyboxName}},
		{"tag with base name", tagOnly, archive.ImportOptions{BaseName: "berth/app"}, []string{"docker.io/berth/app:latest"}},
		{"full ref.name, normalised", fullRef, archive.ImportOptions{}, []string{"docker.io/library/busybox:1.36"}},
		{"full ref.name in the base repository", fullRef, archive.ImportOptions{BaseName: "docker.io/library/busybox"}, []string{"docker.io/library/busybox:1.36"}},
		{"digest names", data, archive.ImportOptions{DigestNames: "localhost:5000/imports"},
			[]string{testimages.BusyboxName, "localhost:5000/imports@" + dgst.String()}},
		{"digest names for unnamed only", data, archive.ImportOptions{DigestNames: "imports", SkipDigestForNamed: true}, []string{testimages.BusyboxName}},
		{"digest name for an unnamed image", tagOnly, archive.ImportOptions{DigestNames: "imports", SkipDigestForNamed: true},
			[]string{"docker.io/library/imports@" + dgst.String()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			imgs := e.mustImport(c.data, c.opts)
			slices.Sort(c.want)
			if got := names(imgs); !slices.Equal(got, c.want) {
				t.Errorf("names %v, want %v", got, c.want)
			}
			for _, img := range imgs {
				if img.Target.Digest != dgst {
					t.Errorf("%s → %s, want %s", img.Name, img.Target.Digest, dgst)
				}
			}
		})
	}

	for _, c := range []struct {
		name string
		data []byte
		opts archive.ImportOptions
	}{
		{"tag without base name", tagOnly, archive.ImportOptions{}},
		{"full ref.name outside the base repository", fullRef, archive.ImportOptions{BaseName: "docker.io/berth/other"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			_, err := e.importArchive(c.data, c.opts)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "names no image") {
				t.Fatalf("import: %v", err)
			}
			e.checkClean()
		})
	}

	t.Run("base name with a tag", func(t *testing.T) {
		e := newEnv(t)
		if _, err := e.importArchive(tagOnly, archive.ImportOptions{BaseName: "berth/app:v1"}); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("import: %v", err)
		}
		e.checkClean()
	})
}

func TestImportIndexName(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox)
	ml := build(t, testimages.MultiLayer)
	const idxName = "docker.io/berth/bundle:v1"
	for format, data := range map[string][]byte{
		"oci":    ociArchive(t, testimages.WriteOptions{}, bb, ml),
		"docker": dockerArchive(t, bb, ml),
	} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			imgs := e.mustImport(data, archive.ImportOptions{IndexName: "berth/bundle:v1"})
			if got := names(imgs); !slices.Equal(got, []string{idxName, testimages.MultiLayerName, testimages.BusyboxName}) {
				t.Fatalf("names %v", got)
			}
			idx, err := e.is.Get(e.ctx, idxName)
			if err != nil {
				t.Fatal(err)
			}
			index, err := images.ReadIndex(e.ctx, e.cs, idx.Target)
			if err != nil || len(index.Manifests) != 2 {
				t.Fatalf("index %+v, %v", index, err)
			}
			lbls := e.labels(idx.Target.Digest)
			for i, m := range index.Manifests {
				if k := fmt.Sprintf("%s%d", images.LabelGCRefManifest, i); lbls[k] != m.Digest.String() {
					t.Errorf("label %s = %q, want %s", k, lbls[k], m.Digest)
				}
			}
			// Only the index name keeps the images once the others go.
			for _, n := range []string{testimages.BusyboxName, testimages.MultiLayerName} {
				if err := e.is.Delete(e.ctx, n); err != nil {
					t.Fatal(err)
				}
			}
			e.gc()
			for _, m := range index.Manifests {
				if _, err := images.ResolveManifest(e.ctx, e.cs, m, platforms.Default()); err != nil {
					t.Errorf("content of %s lost: %v", m.Digest, err)
				}
			}
		})
	}
}

func TestReimport(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox, testimages.WithName("docker.io/berth/moving:latest"))
	ml := build(t, testimages.MultiLayer, testimages.WithName("docker.io/berth/moving:latest"))
	e := newEnv(t)
	first := e.mustImport(ociArchive(t, testimages.WriteOptions{}, bb), archive.ImportOptions{})
	if _, err := e.is.Update(e.ctx, images.Image{Name: first[0].Name, Labels: map[string]string{"keep": "me"}}, "labels"); err != nil {
		t.Fatal(err)
	}
	again := e.mustImport(ociArchive(t, testimages.WriteOptions{}, bb), archive.ImportOptions{})
	if again[0].Target.Digest != bb.Target.Digest || again[0].Labels["keep"] != "me" {
		t.Errorf("reimport changed the record: %+v", again[0])
	}
	moved := e.mustImport(ociArchive(t, testimages.WriteOptions{}, ml), archive.ImportOptions{})
	got, err := e.is.Get(e.ctx, moved[0].Name)
	if err != nil || got.Target.Digest != ml.Target.Digest || got.Labels["keep"] != "me" {
		t.Errorf("after importing another image under the name: %+v, %v", got, err)
	}
	e.gc()
	if got := e.digests(); !slices.Equal(got, union(wantContent(t, ml, ""))) {
		t.Errorf("after gc %v: the replaced image's content should be gone", got)
	}
}

func TestImportUnderCallerLease(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox)
	e := newEnv(t)
	l, err := e.db.Leases().Create(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctx := leases.WithLease(e.ctx, l.ID)
	if _, err := archive.Import(ctx, e.cs, e.is, e.db.Leases(), bytes.NewReader(ociArchive(t, testimages.WriteOptions{}, bb)), archive.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	ls, err := e.db.Leases().List(e.ctx)
	if err != nil || len(ls) != 1 || ls[0].ID != l.ID {
		t.Fatalf("leases %v, %v: want only the caller's", ls, err)
	}
	res, err := e.db.Leases().ListResources(e.ctx, l)
	if err != nil || len(res) == 0 {
		t.Errorf("the caller's lease holds %v, %v", res, err)
	}
}

func TestImportProgress(t *testing.T) {
	t.Parallel()
	ml := build(t, testimages.MultiLayer)
	data := ociArchive(t, testimages.WriteOptions{}, ml)
	e := newEnv(t)
	var got []archive.Progress
	e.mustImport(data, archive.ImportOptions{Progress: func(p archive.Progress) { got = append(got, p) }})
	if len(got) == 0 {
		t.Fatal("no progress reported")
	}
	for i := 1; i < len(got); i++ {
		if got[i].Bytes < got[i-1].Bytes || got[i].Blobs < got[i-1].Blobs {
			t.Errorf("progress went back: %+v then %+v", got[i-1], got[i])
		}
	}
	last := got[len(got)-1]
	if last.Blobs != len(ml.Blobs) || last.Bytes <= 0 || last.Bytes > int64(len(data)) {
		t.Errorf("last progress %+v, want %d blobs of at most %d bytes", last, len(ml.Blobs), len(data))
	}
}

func TestConcurrentImports(t *testing.T) {
	t.Parallel()
	ml := build(t, testimages.MultiLayer)
	data := ociArchive(t, testimages.WriteOptions{}, ml)
	e := newEnv(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.importArchive(data, archive.ImportOptions{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("import %d: %v", i, err)
		}
	}
	e.gc()
	if got := e.digests(); !slices.Equal(got, union(wantContent(t, ml, ""))) {
		t.Errorf("after gc %v", got)
	}
}

// TestImportCancelled cancels an import part way: the error is the
// cancellation, not a complaint about the archive, and nothing is left.
func TestImportCancelled(t *testing.T) {
	t.Parallel()
	ml := build(t, testimages.MultiLayer)
	e := newEnv(t)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	opts := archive.ImportOptions{Progress: func(p archive.Progress) {
		if p.Blobs >= 2 {
			cancel()
		}
	}}
	_, err := archive.Import(ctx, e.cs, e.is, e.db.Leases(), bytes.NewReader(ociArchive(t, testimages.WriteOptions{}, ml)), opts)
	if !errors.Is(err, context.Canceled) || errdefs.IsInvalidArgument(err) {
		t.Fatalf("import: %v", err)
	}
	e.checkClean()
}
