package testimages

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestDeterministic builds everything twice, the busybox layer included
// (bypassing its cache), and expects identical bytes.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	l1, err := buildBusyboxLayer()
	if err != nil {
		t.Fatal(err)
	}
	l2, err := buildBusyboxLayer()
	if err != nil {
		t.Fatal(err)
	}
	if l1.DiffID != l2.DiffID || !bytes.Equal(l1.Tar, l2.Tar) {
		t.Fatalf("busybox layer differs between builds: %s vs %s", l1.DiffID, l2.DiffID)
	}
	diffIDs := map[string][]digest.Digest{}
	for _, c := range compressions {
		a, b := buildAll(t, WithCompression(c)), buildAll(t, WithCompression(c))
		for name := range a {
			if a[name].Target.Digest != b[name].Target.Digest {
				t.Errorf("%s/%s: target %s then %s", name, c, a[name].Target.Digest, b[name].Target.Digest)
			}
			opts := WriteOptions{DockerManifest: true, NestedIndex: true}
			if !bytes.Equal(ociArchive(t, opts, a[name]), ociArchive(t, opts, b[name])) {
				t.Errorf("%s/%s: OCI archives differ", name, c)
			}
			if !bytes.Equal(dockerArchive(t, a[name]), dockerArchive(t, b[name])) {
				t.Errorf("%s/%s: docker archives differ", name, c)
			}
			r, err := a[name].Resolve("")
			if err != nil {
				t.Fatalf("%s/%s: %v", name, c, err)
			}
			// The compression changes the blobs but never the content.
			if prev, ok := diffIDs[name]; ok && !slices.Equal(prev, r.Config.RootFS.DiffIDs) {
				t.Errorf("%s/%s: diff IDs %v, other compression gave %v", name, c, r.Config.RootFS.DiffIDs, prev)
			}
			diffIDs[name] = r.Config.RootFS.DiffIDs
		}
	}
}

func TestBusyboxImage(t *testing.T) {
	needBusybox(t)
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != BusyboxName {
		t.Errorf("name %q", img.Name)
	}
	r, err := img.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Config.Config; !slices.Equal(got.Cmd, []string{"sh"}) || !slices.Equal(got.Env, []string{DefaultPath}) {
		t.Errorf("config %+v", got)
	}
	if r.Config.OS != "linux" || r.Config.Architecture != runtime.GOARCH || !r.Config.Created.Equal(Epoch) {
		t.Errorf("config platform %s/%s created %v", r.Config.OS, r.Config.Architecture, r.Config.Created)
	}
	if len(r.Manifest.Layers) != 1 || r.Manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Fatalf("layers %+v", r.Manifest.Layers)
	}
	tars, err := img.LayerTars("")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*tar.Header{}
	for _, e := range readTar(t, tars[0]) {
		byName[e.hdr.Name] = e.hdr
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	applets := strings.Fields(string(out))
	for _, a := range applets {
		if a == "busybox" {
			continue // the binary itself
		}
		if h := byName["bin/"+a]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("applet %s: %+v, want a symlink to busybox", a, h)
		}
	}
	for name, mode := range map[string]int64{"bin/busybox": 0o755, "tmp/": 0o1777, "root/": 0o700, "etc/passwd": 0o644, "www/index.html": 0o644} {
		if h := byName[name]; h == nil || h.Mode != mode {
			t.Errorf("%s: %+v, want mode %#o", name, h, mode)
		}
	}
	if h := byName["home/berth/"]; h == nil || h.Uid != BerthUID || h.Gid != BerthGID {
		t.Errorf("home/berth: %+v", h)
	}
}

func TestWalk(t *testing.T) {
	needBusybox(t)
	for name, img := range buildAll(t) {
		seen := map[digest.Digest]bool{}
		err := img.Walk(func(desc ocispec.Descriptor, data []byte) error {
			if seen[desc.Digest] {
				return fmt.Errorf("%s visited twice", desc.Digest)
			}
			if digest.FromBytes(data) != desc.Digest || int64(len(data)) != desc.Size {
				return fmt.Errorf("%s: data does not match", desc.Digest)
			}
			children, err := Children(desc, data)
			if err != nil {
				return err
			}
			for _, c := range children {
				if !seen[c.Digest] {
					return fmt.Errorf("%s visited before its child %s", desc.Digest, c.Digest)
				}
			}
			seen[desc.Digest] = true
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if len(seen) != len(img.Blobs) || !seen[img.Target.Digest] {
			t.Errorf("%s: walked %d of %d blobs", name, len(seen), len(img.Blobs))
		}
	}
}

func TestMultiPlatform(t *testing.T) {
	needBusybox(t)
	img, err := MultiPlatform(WithCompression(Zstd))
	if err != nil {
		t.Fatal(err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(img.Blobs[img.Target.Digest], &index); err != nil {
		t.Fatal(err)
	}
	if img.Target.MediaType != ocispec.MediaTypeImageIndex || len(index.Manifests) != 3 {
		t.Fatalf("target %+v with %d manifests", img.Target, len(index.Manifests))
	}
	host := platforms.NewMatcher(platforms.DefaultSpec())
	for i, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		want := platforms.MustParse(p)
		if got := index.Manifests[i].Platform; got == nil || platforms.Format(*got) != platforms.Format(want) {
			t.Errorf("manifest %d platform %v, want %s", i, got, p)
		}
		r, err := img.Resolve(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if r.Config.OS != want.OS || r.Config.Architecture != want.Architecture || r.Config.Variant != want.Variant {
			t.Errorf("%s: config says %s/%s/%s", p, r.Config.OS, r.Config.Architecture, r.Config.Variant)
		}
		tars, err := img.LayerTars(p)
		if err != nil {
			t.Fatal(err)
		}
		files := tarFiles(t, tars[0])
		if host.Match(want) {
			if _, ok := files["bin/busybox"]; !ok {
				t.Errorf("%s is the host platform but has no busybox", p)
			}
		} else if string(files[PlatformMarker]) != p+"\n" {
			t.Errorf("%s: marker %q", p, files[PlatformMarker])
		}
	}
	if _, err := img.Resolve("linux/s390x"); !errdefs.IsNotFound(err) {
		t.Errorf("resolve linux/s390x: %v, want not found", err)
	}
}

func TestMultiLayerImage(t *testing.T) {
	needBusybox(t)
	img, err := MultiLayer()
	if err != nil {
		t.Fatal(err)
	}
	r, err := img.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config.Config
	if c.User != "berth" || c.WorkingDir != "/app" || c.StopSignal != MultiLayerStopSignal ||
		!slices.Equal(c.Entrypoint, []string{"/app/entrypoint.sh"}) || !slices.Equal(c.Cmd, []string{"/app/script.sh"}) ||
		len(c.ExposedPorts) != 2 || len(c.Volumes) != 1 || c.Labels["org.berth.test"] != "multilayer" || len(c.Env) != 3 {
		t.Errorf("config %+v", c)
	}
	if len(r.Manifest.Layers) != 4 || len(r.Config.History) != 5 {
		t.Errorf("%d layers, %d history entries", len(r.Manifest.Layers), len(r.Config.History))
	}
	if r.Manifest.Annotations["org.opencontainers.image.title"] == "" {
		t.Error("manifest annotations missing")
	}
}

func TestSymlinkData(t *testing.T) {
	needBusybox(t)
	img, err := SymlinkData()
	if err != nil {
		t.Fatal(err)
	}
	tars, err := img.LayerTars("")
	if err != nil {
		t.Fatal(err)
	}
	entries := readTar(t, tars[len(tars)-1])
	if len(entries) != 1 || entries[0].hdr.Name != "data" || entries[0].hdr.Typeflag != tar.TypeSymlink || entries[0].hdr.Linkname != "/etc" {
		t.Errorf("top layer %+v, want only data -> /etc", entries)
	}
}

func TestBuildImageRejectsHistoryMismatch(t *testing.T) {
	l, err := NewLayer(File("a", nil, 0o644))
	if err != nil {
		t.Fatal(err)
	}
	_, err = BuildImage(ImageSpec{Layers: []Layer{l, l}, History: []ocispec.History{{CreatedBy: "one"}}})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("err %v, want invalid argument", err)
	}
}

// TestWritersValidate writes every image in every form and validates it.
func TestWritersValidate(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	for _, c := range compressions {
		for name, img := range buildAll(t, WithCompression(c)) {
			for _, opts := range []WriteOptions{{}, {DockerManifest: true}, {NestedIndex: true}, {DockerManifest: true, NestedIndex: true}} {
				t.Run(fmt.Sprintf("%s/%s/%+v", name, c, opts), func(t *testing.T) {
					archive := ociArchive(t, opts, img)
					if err := ValidateArchive(bytes.NewReader(archive)); err != nil {
						t.Errorf("OCI archive: %v", err)
					}
					checkIndexJSON(t, tarFiles(t, archive), img, opts)
					dir := t.TempDir()
					if err := WriteOCILayout(dir, opts, img); err != nil {
						t.Fatal(err)
					}
					if err := Validate(os.DirFS(dir)); err != nil {
						t.Errorf("OCI layout: %v", err)
					}
				})
			}
			if err := ValidateArchive(bytes.NewReader(dockerArchive(t, img))); err != nil {
				t.Errorf("%s/%s docker archive: %v", name, c, err)
			}
		}
	}
}

func checkIndexJSON(t *testing.T, files map[string][]byte, img *Image, opts WriteOptions) {
	t.Helper()
	var index ocispec.Index
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json has %d entries", len(index.Manifests))
	}
	desc := index.Manifests[0]
	if desc.Annotations[AnnotationImageName] != img.Name || desc.Annotations[ocispec.AnnotationRefName] != "latest" {
		t.Errorf("index.json annotations %v", desc.Annotations)
	}
	if opts.NestedIndex {
		var nested ocispec.Index
		if err := json.Unmarshal(files[blobPath(desc.Digest)], &nested); err != nil || desc.MediaType != ocispec.MediaTypeImageIndex ||
			len(nested.Manifests) != 1 || nested.Manifests[0].Digest != img.Target.Digest {
			t.Errorf("nested index %+v does not wrap %s (%v)", nested, img.Target.Digest, err)
		}
	} else if desc.Digest != img.Target.Digest {
		t.Errorf("index.json points at %s, want %s", desc.Digest, img.Target.Digest)
	}
	_, hasDocker := files["manifest.json"]
	if hasDocker != opts.DockerManifest {
		t.Errorf("manifest.json present: %v", hasDocker)
	}
}

func TestOCIArchiveManyImages(t *testing.T) {
	needBusybox(t)
	bb, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	ml, err := MultiLayer()
	if err != nil {
		t.Fatal(err)
	}
	archive := ociArchive(t, WriteOptions{DockerManifest: true}, bb, ml, bb.WithName("example.com/other/busybox:v1"))
	if err := ValidateArchive(bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	files := tarFiles(t, archive)
	var index ocispec.Index
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range index.Manifests {
		names = append(names, m.Annotations[AnnotationImageName]+"="+m.Annotations[ocispec.AnnotationRefName])
	}
	want := []string{BusyboxName + "=latest", MultiLayerName + "=latest", "example.com/other/busybox:v1=v1"}
	if !slices.Equal(names, want) {
		t.Errorf("index.json names %q, want %q", names, want)
	}
	var manifest []dockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, m := range manifest {
		tags = append(tags, m.RepoTags...)
	}
	if want := []string{"busybox:latest", "berth/multilayer:latest", "example.com/other/busybox:v1"}; !slices.Equal(tags, want) {
		t.Errorf("manifest.json RepoTags %q, want %q", tags, want)
	}
	// The shared busybox blobs are stored once.
	count := 0
	for name := range files {
		if strings.HasPrefix(name, "blobs/sha256/") {
			count++
		}
	}
	all := map[digest.Digest]bool{}
	for _, img := range []*Image{bb, ml} {
		for d := range img.Blobs {
			all[d] = true
		}
	}
	if count != len(all) {
		t.Errorf("%d blobs in the archive, want %d", count, len(all))
	}
}

var legacyLayerPath = regexp.MustCompile(`^([0-9a-f]{64})/layer\.tar$`)

func TestDockerArchiveStructure(t *testing.T) {
	needBusybox(t)
	img, err := MultiLayer(WithCompression(Zstd))
	if err != nil {
		t.Fatal(err)
	}
	files := tarFiles(t, dockerArchive(t, img))
	var manifest []dockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	r, err := img.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || !slices.Equal(manifest[0].RepoTags, []string{"berth/multilayer:latest"}) ||
		manifest[0].Config != r.Manifest.Config.Digest.Encoded()+".json" || len(manifest[0].Layers) != 4 {
		t.Fatalf("manifest.json %+v", manifest)
	}
	parent := ""
	for i, p := range manifest[0].Layers {
		m := legacyLayerPath.FindStringSubmatch(p)
		if m == nil {
			t.Fatalf("layer path %q", p)
		}
		id := m[1]
		if string(files[id+"/VERSION"]) != "1.0" {
			t.Errorf("%s/VERSION %q", id, files[id+"/VERSION"])
		}
		var legacy dockerLegacyLayer
		if err := json.Unmarshal(files[id+"/json"], &legacy); err != nil {
			t.Fatal(err)
		}
		if legacy.ID != id || legacy.Parent != parent {
			t.Errorf("layer %d json: id %s parent %s, want %s and %s", i, legacy.ID, legacy.Parent, id, parent)
		}
		if top := i == len(manifest[0].Layers)-1; (legacy.Config != nil) != top {
			t.Errorf("layer %d json carries config: %v", i, legacy.Config != nil)
		}
		if digest.FromBytes(files[p]) != r.Config.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: %s is not the uncompressed layer", i, p)
		}
		parent = id
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(files["repositories"], &repos); err != nil {
		t.Fatal(err)
	}
	if repos["berth/multilayer"]["latest"] != parent {
		t.Errorf("repositories %v, want berth/multilayer:latest -> %s", repos, parent)
	}
	if err := WriteDockerArchive(&bytes.Buffer{}, img.WithName("")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unnamed image: err %v", err)
	}
}

// TestValidateRejects breaks a valid layout in one way at a time.
func TestValidateRejects(t *testing.T) {
	needBusybox(t)
	img, err := MultiLayer()
	if err != nil {
		t.Fatal(err)
	}
	r, err := img.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	layer := blobPath(r.Manifest.Layers[1].Digest)
	cases := map[string]func(dir string) error{
		"corrupt layer": func(dir string) error {
			return flipLastByte(filepath.Join(dir, layer))
		},
		"missing layer": func(dir string) error { return os.Remove(filepath.Join(dir, layer)) },
		"missing oci-layout version": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{}`), 0o644)
		},
		"wrong size in index.json": func(dir string) error {
			return editJSON(filepath.Join(dir, "index.json"), func(idx *ocispec.Index) { idx.Manifests[0].Size++ })
		},
		"layer media type": func(dir string) error {
			return rewriteManifest(dir, r, func(m *ocispec.Manifest) { m.Layers[0].MediaType = "text/plain" })
		},
		"config media type": func(dir string) error {
			return rewriteManifest(dir, r, func(m *ocispec.Manifest) { m.Config.MediaType = mediaTypeDockerConfig })
		},
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := WriteOCILayout(dir, WriteOptions{}, img); err != nil {
				t.Fatal(err)
			}
			if err := breakIt(dir); err != nil {
				t.Fatal(err)
			}
			if err := Validate(os.DirFS(dir)); err == nil {
				t.Error("broken layout validated")
			} else {
				t.Log(err)
			}
		})
	}
	t.Run("wrong diff ID", func(t *testing.T) {
		l, err := NewLayer(File("a", []byte("a"), 0o644))
		if err != nil {
			t.Fatal(err)
		}
		l.DiffID = digest.FromString("something else")
		bad, err := BuildImage(ImageSpec{Name: "x/y:z", Layers: []Layer{l}})
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateArchive(bytes.NewReader(ociArchive(t, WriteOptions{}, bad))); err == nil {
			t.Error("OCI archive with a wrong diff ID validated")
		}
		if err := ValidateArchive(bytes.NewReader(dockerArchive(t, bad))); err == nil {
			t.Error("docker archive with a wrong diff ID validated")
		}
	})
	t.Run("escaping archive entry", func(t *testing.T) {
		var buf bytes.Buffer
		if err := writeTar(&buf, []layoutFile{{"../oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}}); err != nil {
			t.Fatal(err)
		}
		if err := ValidateArchive(&buf); !errdefs.IsInvalidArgument(err) {
			t.Errorf("err %v, want invalid argument", err)
		}
	})
}

func flipLastByte(p string) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	data[len(data)-1] ^= 0xff
	return os.WriteFile(p, data, 0o644)
}

func editJSON(p string, edit func(*ocispec.Index)) error {
	var idx ocispec.Index
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return err
	}
	edit(&idx)
	data, err = json.Marshal(idx)
	if err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// rewriteManifest stores an edited manifest and points index.json at it,
// so only the edit itself is wrong.
func rewriteManifest(dir string, r Resolved, edit func(*ocispec.Manifest)) error {
	m := r.Manifest
	m.Layers = slices.Clone(m.Layers)
	edit(&m)
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	d := digest.FromBytes(data)
	if err := os.WriteFile(filepath.Join(dir, blobPath(d)), data, 0o644); err != nil {
		return err
	}
	return editJSON(filepath.Join(dir, "index.json"), func(idx *ocispec.Index) {
		idx.Manifests[0].Digest, idx.Manifests[0].Size = d, int64(len(data))
	})
}
