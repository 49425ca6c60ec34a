package archive_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/images/archive"
	"github.com/berthd/berth/integration/testimages"
)

// badCase is an archive import must refuse with an error of class is
// whose text contains want.
type badCase struct {
	name string
	data []byte
	opts archive.ImportOptions
	is   func(error) bool
	want string
}

func runBad(t *testing.T, cases []badCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			imgs, err := e.importArchive(c.data, c.opts)
			if err == nil {
				t.Fatalf("import succeeded: %+v", imgs)
			}
			if !c.is(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q: want one containing %q of the right class", err, c.want)
			}
			t.Logf("error: %v", err)
			e.checkClean()
		})
	}
}

// replaceIndex swaps index.json for one listing manifests.
func replaceIndex(t *testing.T, data []byte, manifests ...ocispec.Descriptor) []byte {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
	js, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	return replaceFile(t, data, "index.json", js)
}

func replaceFile(t *testing.T, data []byte, name string, content []byte) []byte {
	t.Helper()
	return edit(t, data, func(en entry) []entry {
		if en.hdr.Name == name {
			en.data = content
		}
		return []entry{en}
	})
}

func dropFile(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	return edit(t, data, func(en entry) []entry {
		if en.hdr.Name == name {
			return nil
		}
		return []entry{en}
	})
}

func addFiles(t *testing.T, data []byte, extra ...entry) []byte {
	t.Helper()
	return writeEntries(t, append(readEntries(t, data), extra...))
}

// named annotates a descriptor with an image name.
func named(desc ocispec.Descriptor, name string) ocispec.Descriptor {
	desc.Annotations = map[string]string{images.AnnotationImageName: name}
	return desc
}

func TestImportRejectsBadOCIArchives(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox)
	good := ociArchive(t, testimages.WriteOptions{}, bb)
	r, err := bb.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	layer := r.Manifest.Layers[0].Digest
	gzipped := func(data []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(data)
		w.Close()
		return buf.Bytes()
	}

	// A valid manifest over the 4 MiB limit, stored under its digest.
	huge, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: r.Manifest.Config, Layers: r.Manifest.Layers, Annotations: map[string]string{"pad": strings.Repeat("x", images.MaxManifestSize)}})
	hugeDesc := descOf(huge, ocispec.MediaTypeImageManifest)
	// A manifest blob that is not JSON, under its own digest.
	notJSON := []byte("{this is not json")
	notJSONDesc := descOf(notJSON, ocispec.MediaTypeImageManifest)
	// A manifest that claims to be an index.
	asIndex := bb.Target
	asIndex.MediaType = ocispec.MediaTypeImageIndex
	// A manifest whose size in index.json is wrong.
	wrongSize := bb.Target
	wrongSize.Size++
	// index.json itself over the limit.
	bigIndex := []byte(`{"schemaVersion":2,"manifests":[],"pad":"` + strings.Repeat("x", images.MaxManifestSize) + `"}`)

	runBad(t, []badCase{
		{"truncated in a blob", good[:len(good)/2], archive.ImportOptions{}, errdefs.IsInvalidArgument, "truncated"},
		{"truncated at an entry boundary", good[:len(good)-1024], archive.ImportOptions{}, errdefs.IsInvalidArgument, "truncated"},
		{"truncated gzip", gzipped(good)[:len(gzipped(good))-100], archive.ImportOptions{}, errdefs.IsInvalidArgument, "truncated"},
		{"empty", nil, archive.ImportOptions{}, errdefs.IsInvalidArgument, "empty"},
		{"not a tar", bytes.Repeat([]byte("garbage!"), 200), archive.ImportOptions{}, errdefs.IsInvalidArgument, "invalid archive"},
		{"blob does not match its digest", edit(t, good, func(en entry) []entry {
			if en.hdr.Name == blobName(layer) {
				en.data = bytes.Clone(en.data)
				en.data[len(en.data)/2] ^= 0xff
			}
			return []entry{en}
		}), archive.ImportOptions{}, errdefs.IsInvalidArgument, "does not match its digest"},
		{"manifest over 4 MiB", addFiles(t, replaceIndex(t, good, named(hugeDesc, "docker.io/berth/huge:v1")), file(blobName(hugeDesc.Digest), huge)),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "over the limit"},
		{"index.json over 4 MiB", replaceFile(t, good, "index.json", bigIndex), archive.ImportOptions{}, errdefs.IsInvalidArgument, "over the limit"},
		{"unknown media type", replaceIndex(t, good, named(ocispec.Descriptor{MediaType: "application/x-unknown", Digest: layer, Size: r.Manifest.Layers[0].Size}, "docker.io/berth/x:v1")),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "unknown media type"},
		{"schema 1 manifest", replaceIndex(t, good, named(ocispec.Descriptor{MediaType: images.MediaTypeDockerSchema1Manifest, Digest: layer, Size: 1}, "docker.io/berth/x:v1")),
			archive.ImportOptions{}, errdefs.IsNotImplemented, "schema 1"},
		{"entry with ..", addFiles(t, good, file("blobs/../../etc/passwd", []byte("x"))), archive.ImportOptions{}, errdefs.IsInvalidArgument, `".." component`},
		{"absolute entry", addFiles(t, good, file("/etc/passwd", []byte("x"))), archive.ImportOptions{}, errdefs.IsInvalidArgument, "absolute"},
		{"symlink out of the archive", addFiles(t, good, entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "blobs/link", Linkname: "../../../etc/passwd"}}),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "outside"},
		{"index refers to a missing manifest", dropFile(t, good, blobName(bb.Target.Digest)), archive.ImportOptions{}, errdefs.IsInvalidArgument, bb.Target.Digest.String()},
		{"manifest refers to a missing layer", dropFile(t, good, blobName(layer)), archive.ImportOptions{}, errdefs.IsInvalidArgument, "not in the archive"},
		{"manifest refers to a missing config", dropFile(t, good, blobName(r.Manifest.Config.Digest)), archive.ImportOptions{}, errdefs.IsInvalidArgument, "not in the archive"},
		{"no index.json or manifest.json", dropFile(t, dropFile(t, good, "index.json"), "oci-layout"), archive.ImportOptions{}, errdefs.IsInvalidArgument, "neither"},
		{"oci-layout without index.json", dropFile(t, good, "index.json"), archive.ImportOptions{}, errdefs.IsInvalidArgument, "no index.json"},
		{"invalid index.json", replaceFile(t, good, "index.json", []byte(`{"schemaVersion":2,"manifests":[`)), archive.ImportOptions{}, errdefs.IsInvalidArgument, "index.json"},
		{"index.json of schema 1", replaceFile(t, good, "index.json", []byte(`{"schemaVersion":1,"manifests":[]}`)), archive.ImportOptions{}, errdefs.IsInvalidArgument, "schemaVersion"},
		{"empty index.json", replaceIndex(t, good), archive.ImportOptions{}, errdefs.IsInvalidArgument, "lists no images"},
		{"invalid oci-layout", replaceFile(t, good, "oci-layout", []byte(`{`)), archive.ImportOptions{}, errdefs.IsInvalidArgument, "oci-layout"},
		{"unsupported layout version", replaceFile(t, good, "oci-layout", []byte(`{"imageLayoutVersion":"2.0.0"}`)), archive.ImportOptions{}, errdefs.IsInvalidArgument, "2.0.0"},
		{"invalid manifest JSON", addFiles(t, replaceIndex(t, good, named(notJSONDesc, "docker.io/berth/x:v1")), file(blobName(notJSONDesc.Digest), notJSON)),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "invalid JSON"},
		{"manifest posing as an index", replaceIndex(t, good, named(asIndex, "docker.io/berth/x:v1")), archive.ImportOptions{}, errdefs.IsInvalidArgument, "expected an index"},
		{"descriptor size mismatch", replaceIndex(t, good, named(wrongSize, "docker.io/berth/x:v1")), archive.ImportOptions{}, errdefs.IsInvalidArgument, "bytes"},
		{"invalid digest in index.json", replaceIndex(t, good, named(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:nothex", Size: 3}, "docker.io/berth/x:v1")),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "digest"},
		{"invalid image name", replaceIndex(t, good, named(bb.Target, "Not A Valid/Name")), archive.ImportOptions{}, errdefs.IsInvalidArgument, "Not A Valid"},
		{"one name for two images", replaceIndex(t, good, named(bb.Target, "docker.io/berth/x:v1"), named(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: hugeDesc.Digest, Size: 5}, "docker.io/berth/x:v1")),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "two different images"},
	})
}

func TestImportRejectsBadDockerArchives(t *testing.T) {
	t.Parallel()
	bb := build(t, testimages.Busybox)
	good := dockerArchive(t, bb)
	var entries []map[string]any
	for _, en := range readEntries(t, good) {
		if en.hdr.Name == "manifest.json" {
			if err := json.Unmarshal(en.data, &entries); err != nil {
				t.Fatal(err)
			}
		}
	}
	layerPath := entries[0]["Layers"].([]any)[0].(string)
	configPath := entries[0]["Config"].(string)
	manifestWith := func(change func(map[string]any)) []byte {
		m := map[string]any{}
		for k, v := range entries[0] {
			m[k] = v
		}
		change(m)
		js, _ := json.Marshal([]any{m})
		return replaceFile(t, good, "manifest.json", js)
	}
	// A gzip layer the config does not describe is accepted as gzip; an
	// uncompressed one must match its diff ID.
	otherTar := ociArchive(t, testimages.WriteOptions{}, bb)[:2048]

	runBad(t, []badCase{
		{"invalid manifest.json", replaceFile(t, good, "manifest.json", []byte(`[{"Config":`)), archive.ImportOptions{}, errdefs.IsInvalidArgument, "manifest.json"},
		{"empty manifest.json", replaceFile(t, good, "manifest.json", []byte(`[]`)), archive.ImportOptions{}, errdefs.IsInvalidArgument, "lists no images"},
		{"missing layer", dropFile(t, good, layerPath), archive.ImportOptions{}, errdefs.IsInvalidArgument, "not in the archive"},
		{"missing config", dropFile(t, good, configPath), archive.ImportOptions{}, errdefs.IsInvalidArgument, "not in the archive"},
		{"invalid config", replaceFile(t, good, configPath, []byte(`{"rootfs":`)), archive.ImportOptions{}, errdefs.IsInvalidArgument, "invalid JSON"},
		{"layer count mismatch", manifestWith(func(m map[string]any) { m["Layers"] = []string{layerPath, layerPath} }),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "diff IDs"},
		{"layer that is not its diff ID", replaceFile(t, good, layerPath, otherTar), archive.ImportOptions{}, errdefs.IsInvalidArgument, "diff ID"},
		{"layer path with ..", manifestWith(func(m map[string]any) { m["Layers"] = []string{"../" + layerPath} }),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, `".."`},
		{"invalid RepoTag", manifestWith(func(m map[string]any) { m["RepoTags"] = []string{"busybox:bad tag!"} }),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "bad tag!"},
		{"invalid repositories", replaceFile(t, manifestWith(func(m map[string]any) { m["RepoTags"] = nil }), "repositories", []byte("{")),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "repositories"},
		{"manifest.json over 4 MiB", replaceFile(t, good, "manifest.json", append([]byte(`[`), bytes.Repeat([]byte(" "), images.MaxManifestSize)...)),
			archive.ImportOptions{}, errdefs.IsInvalidArgument, "over the limit"},
		{"config digest in a blobs path that lies", addFiles(t, manifestWith(func(m map[string]any) { m["Config"] = blobName(digest.FromString("other")) }),
			file(blobName(digest.FromString("other")), []byte("not the other"))), archive.ImportOptions{}, errdefs.IsInvalidArgument, "does not match its digest"},
	})
}
