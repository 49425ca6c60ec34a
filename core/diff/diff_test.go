package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/require"
)

// TestApplyImages applies the multi-layer test image, stored with each
// compression, onto overlay and native and checks the resulting tree.
func TestApplyImages(t *testing.T) {
	require.Root(t)
	for _, sc := range snapshotterCases() {
		for _, c := range []testimages.Compression{testimages.Gzip, testimages.Zstd, testimages.Uncompressed} {
			t.Run(sc.name+"/"+string(c), func(t *testing.T) {
				t.Parallel()
				img, err := testimages.MultiLayer(testimages.WithCompression(c))
				if err != nil {
					require.Missing(t, err.Error())
				}
				store := newStore(t)
				ingest(t, store, img)
				sn := sc.new(t)
				top := applyAll(t, New(store), sn, resolve(t, img))
				withView(t, sn, top, func(root string) {
					if err := testimages.MultiLayerExpected().Check(root); err != nil {
						t.Fatal(err)
					}
				})
			})
		}
	}
}

// TestApplyOverlayUpperDir checks the overlay fast path: a layer lands in
// the upper directory with overlay whiteouts, not through a mount.
func TestApplyOverlayUpperDir(t *testing.T) {
	require.Root(t)
	sn := snapshotterCases()[0].new(t)
	img, err := testimages.MultiLayer()
	if err != nil {
		require.Missing(t, err.Error())
	}
	store := newStore(t)
	ingest(t, store, img)
	r := resolve(t, img)
	r.manifest.Layers, r.diffIDs = r.manifest.Layers[:2], r.diffIDs[:2]
	parent := applyAll(t, New(store), sn, r)

	ctx := context.Background()
	mounts, err := sn.Prepare(ctx, "third", parent)
	if err != nil {
		t.Fatal(err)
	}
	spec, ok := parseOverlay(mounts)
	if !ok || spec.upper == "" {
		t.Fatalf("overlay snapshot on a parent gave mounts %+v, not a writable overlay", mounts)
	}
	full := resolve(t, img)
	if _, err := New(store).Apply(ctx, full.manifest.Layers[2], mounts, WithDiffID(full.diffIDs[2])); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(spec.upper, "app", "remove-me.txt"), &st); err != nil {
		t.Fatalf("whiteout of app/remove-me.txt not in the upper directory: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("app/remove-me.txt in the upper directory has mode %o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
	}
	if left, _ := mount.MountedUnder(os.TempDir()); len(left) > 0 {
		for _, m := range left {
			if strings.Contains(m, "berth-mount-") {
				t.Fatalf("temporary mount %s exists after an upper-dir apply", m)
			}
		}
	}
}

// TestApplyThroughMount applies onto mounts that have no fast path (a
// bind mount spelled with another type), which are mounted on a
// temporary directory and unmounted.
func TestApplyThroughMount(t *testing.T) {
	require.Root(t)
	img, err := testimages.Busybox()
	if err != nil {
		require.Missing(t, err.Error())
	}
	store := newStore(t)
	ingest(t, store, img)
	r := resolve(t, img)
	dir := scratchDir(t)
	mounts := []mount.Mount{{Type: "none", Source: dir, Options: []string{"rbind", "rw"}}}
	if _, ok, _ := applyTargetOK(mounts); ok {
		t.Fatal("test mounts unexpectedly have a fast path")
	}
	got, err := New(store).Apply(context.Background(), r.manifest.Layers[0], mounts, WithDiffID(r.diffIDs[0]), WithSyncFs(true))
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != r.diffIDs[0] {
		t.Fatalf("diff ID %s, want %s", got.Digest, r.diffIDs[0])
	}
	if err := testimages.BusyboxExpected().Check(dir); err != nil {
		t.Fatal(err)
	}
}

func applyTargetOK(m []mount.Mount) (string, bool, error) {
	dir, _, ok := applyTarget(m)
	return dir, ok, nil
}

// TestApplyErrors covers refused media types, a wrong diff ID, a corrupt
// blob, a missing blob and a read-only target.
func TestApplyErrors(t *testing.T) {
	require.Root(t)
	img, err := testimages.Busybox()
	if err != nil {
		require.Missing(t, err.Error())
	}
	store := newStore(t)
	ingest(t, store, img)
	r := resolve(t, img)
	layer := r.manifest.Layers[0]
	ctx := context.Background()
	d := New(store)

	for _, mt := range []string{"application/vnd.oci.image.layer.v1.tar+gzip+encrypted", ocispec.MediaTypeImageConfig, ""} {
		bad := layer
		bad.MediaType = mt
		_, err := d.Apply(ctx, bad, []mount.Mount{{Type: "bind", Source: t.TempDir(), Options: []string{"rbind", "rw"}}})
		if !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), fmt.Sprintf("%q", mt)) {
			t.Errorf("media type %q: error %v, want ErrNotImplemented naming it", mt, err)
		}
	}

	wrong := digest.FromString("not this layer")
	dir := t.TempDir()
	_, err = d.Apply(ctx, layer, []mount.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", "rw"}}}, WithDiffID(wrong))
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), wrong.String()) || !strings.Contains(err.Error(), r.diffIDs[0].String()) {
		t.Errorf("wrong diff ID: error %v, want ErrFailedPrecondition naming both digests", err)
	}

	blob, err := content.ReadBlob(ctx, store, layer, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	truncated := blob[:len(blob)/2]
	tdesc := ocispec.Descriptor{MediaType: layer.MediaType, Digest: digest.FromBytes(truncated), Size: int64(len(truncated))}
	if err := content.WriteBlob(ctx, store, "truncated", bytes.NewReader(truncated), tdesc); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apply(ctx, tdesc, []mount.Mount{{Type: "bind", Source: t.TempDir(), Options: []string{"rbind", "rw"}}}); err == nil {
		t.Error("truncated gzip layer applied without error")
	}

	missing := ocispec.Descriptor{MediaType: layer.MediaType, Digest: digest.FromString("absent"), Size: 10}
	if _, err := d.Apply(ctx, missing, []mount.Mount{{Type: "bind", Source: t.TempDir(), Options: []string{"rbind", "rw"}}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing blob: error %v, want ErrNotFound", err)
	}

	ro := scratchDir(t)
	if _, err := d.Apply(ctx, layer, []mount.Mount{{Type: "bind", Source: ro, Options: []string{"rbind", "ro"}}}); err == nil {
		t.Error("apply onto a read-only bind mount succeeded")
	}
	if _, err := d.Apply(ctx, layer, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("apply onto no mounts: error %v, want ErrInvalidArgument", err)
	}
}

// TestCompareRoundTrip changes a snapshot on top of the multi-layer image,
// writes the diff with each compression (the overlay upper-directory path
// and the tree comparison), applies it onto the parent again and checks
// that the result matches the changed snapshot.
func TestCompareRoundTrip(t *testing.T) {
	require.Root(t)
	for _, sc := range snapshotterCases() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			img, err := testimages.MultiLayer()
			if err != nil {
				require.Missing(t, err.Error())
			}
			store := newStore(t)
			ingest(t, store, img)
			sn := sc.new(t)
			d := New(store)
			parent := applyAll(t, d, sn, resolve(t, img))
			ctx := context.Background()
			upper, err := sn.Prepare(ctx, "work", parent)
			if err != nil {
				t.Fatal(err)
			}
			if err := mount.WithTempMount(upper, func(root string) error { modify(t, root); return nil }); err != nil {
				t.Fatal(err)
			}
			want := mountedTree(t, upper)
			lower, err := sn.View(ctx, "lower", parent)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := overlayUpper(lower, upper); ok != (sc.name == "overlayfs") {
				t.Fatalf("upper-directory diff possible: %v, for %s mounts %+v over %+v", ok, sc.name, upper, lower)
			}
			for _, mt := range []string{ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayer} {
				desc, err := d.Compare(ctx, lower, upper, WithMediaType(mt), WithLabels(map[string]string{"test": "yes"}))
				if err != nil {
					t.Fatalf("%s: %v", mt, err)
				}
				checkReapplied(t, d, store, sn, parent, desc, want)
			}
			// Against nothing, the diff is the whole tree: applied onto an
			// empty snapshot it rebuilds the same tree.
			desc, err := d.Compare(ctx, nil, upper)
			if err != nil {
				t.Fatal(err)
			}
			checkReapplied(t, d, store, sn, "", desc, want)
		})
	}
}

// checkReapplied applies the diff desc onto parent and compares the tree
// with want; the blob must carry its uncompressed digest label.
func checkReapplied(t *testing.T, d *Differ, store content.Store, sn snapshots.Snapshotter, parent string, desc ocispec.Descriptor, want map[string]string) {
	t.Helper()
	ctx := context.Background()
	info, err := store.Info(ctx, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != desc.Size || info.Labels["test"] != "yes" && parent != "" {
		t.Fatalf("%s: stored blob %+v does not match descriptor %+v or lacks the caller's label", desc.MediaType, info, desc)
	}
	diffID := digest.Digest(info.Labels[LabelUncompressed])
	key := fmt.Sprintf("re-%s-%s", desc.Digest.Encoded()[:12], parent)
	mounts, err := sn.Prepare(ctx, key, parent)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Remove(ctx, key)
	applied, err := d.Apply(ctx, desc, mounts, WithDiffID(diffID))
	if err != nil {
		t.Fatalf("%s: re-apply: %v", desc.MediaType, err)
	}
	if applied.Digest != diffID {
		t.Fatalf("re-applied diff ID %s, label says %s", applied.Digest, diffID)
	}
	got := mountedTree(t, mounts)
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: %s is %q after re-apply, want %q", desc.MediaType, p, got[p], w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: %s exists after re-apply only", desc.MediaType, p)
		}
	}
}

// modify changes a mounted multi-layer tree in every way a layer records.
func modify(t *testing.T, root string) {
	t.Helper()
	writeFile(t, root, "new/dir/file.txt", "added")
	writeFile(t, root, "app/config.txt", "version=3")
	must(t, os.Remove(filepath.Join(root, "app/data/new.txt")))
	must(t, os.RemoveAll(filepath.Join(root, "app/data")))
	writeFile(t, root, "app/data/fresh.txt", "only this")
	must(t, os.Chmod(filepath.Join(root, "etc/motd"), 0o600))
	must(t, os.Chown(filepath.Join(root, "www/index.html"), 1000, 1000))
	must(t, os.Remove(filepath.Join(root, "bin/ls")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(root, "passwd-link")))
	must(t, os.Link(filepath.Join(root, "new/dir/file.txt"), filepath.Join(root, "new/hardlink")))
	must(t, unix.Setxattr(filepath.Join(root, "app/config.txt"), "user.berth", []byte("x"), 0))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mountedTree summarises the tree mounts show.
func mountedTree(t *testing.T, mounts []mount.Mount) map[string]string {
	t.Helper()
	var out map[string]string
	if err := mount.WithTempMount(readOnly(mounts), func(root string) error {
		out = tree(t, root)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// tree maps each path below root to its type, mode, owner, mtime in whole
// seconds, content hash or link target, and user xattr.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d %d", fi.Mode(), st.Uid, st.Gid, st.Mtim.Sec)
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x nlink=%d", sha256.Sum256(data), st.Nlink)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case fi.Mode()&fs.ModeDevice != 0:
			desc += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		buf := make([]byte, 64)
		if n, err := unix.Lgetxattr(p, "user.berth", buf); err == nil {
			desc += " user.berth=" + string(buf[:n])
		}
		out[strings.TrimPrefix(p, root)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCompareOptions covers refused media types (no ingest left), an
// existing blob gaining its label, a named reference and
// SOURCE_DATE_EPOCH clamping.
func TestCompareOptions(t *testing.T) {
	require.Root(t)
	ctx := context.Background()
	store := newStore(t)
	d := New(store)
	lowerDir, upperDir := scratchDir(t), scratchDir(t)
	writeFile(t, lowerDir, "gone.txt", "old")
	writeFile(t, lowerDir, "keep/a.txt", "a")
	writeFile(t, upperDir, "keep/a.txt", "a")
	writeFile(t, upperDir, "keep/b.txt", "b")
	future := time.Now().Add(48 * time.Hour)
	must(t, os.Chtimes(filepath.Join(upperDir, "keep/b.txt"), future, future))
	lower := []mount.Mount{{Type: "bind", Source: lowerDir, Options: []string{"rbind", "ro"}}}
	upper := []mount.Mount{{Type: "bind", Source: upperDir, Options: []string{"rbind", "rw"}}}

	_, err := d.Compare(ctx, lower, upper, WithMediaType("application/vnd.oci.image.layer.v1.tar+bzip2"))
	if !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Fatalf("bzip2 media type: error %v, want ErrNotImplemented", err)
	}
	if st, _ := store.ListStatuses(ctx); len(st) != 0 {
		t.Fatalf("refused diff left ingests %+v", st)
	}

	first, err := d.Compare(ctx, lower, upper, WithReference("my-ref"))
	if err != nil {
		t.Fatal(err)
	}
	if first.MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Fatalf("default media type %q", first.MediaType)
	}
	// The blob already exists without the label: Compare adds it.
	info, err := store.Update(ctx, content.Info{Digest: first.Digest, Labels: map[string]string{}}, "labels")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Labels) != 0 {
		t.Fatalf("labels not cleared: %v", info.Labels)
	}
	again, err := d.Compare(ctx, lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != first.Digest {
		t.Fatalf("same diff written twice has digests %s and %s", first.Digest, again.Digest)
	}
	if info, _ := store.Info(ctx, again.Digest); info.Labels[LabelUncompressed] == "" {
		t.Fatal("existing blob did not get its uncompressed label")
	}

	epoch := time.Unix(1_000_000_000, 0)
	desc, err := d.Compare(ctx, lower, upper, WithMediaType(ocispec.MediaTypeImageLayer), WithSourceDateEpoch(&epoch))
	if err != nil {
		t.Fatal(err)
	}
	entries := readLayer(t, store, desc)
	if len(entries) == 0 {
		t.Fatal("clamped layer is empty")
	}
	for name, mtime := range entries {
		switch {
		case strings.HasPrefix(filepath.Base(name), ".wh."):
			if mtime.Unix() != 0 {
				t.Errorf("whiteout %s dated %v, want the Unix epoch", name, mtime)
			}
		case mtime.After(epoch):
			t.Errorf("%s dated %v, after the source date epoch %v", name, mtime, epoch)
		}
	}
	if _, ok := entries["gone.txt"]; ok {
		t.Error("deleted file written as itself")
	}
	if _, ok := entries[".wh.gone.txt"]; !ok {
		t.Errorf("no whiteout for gone.txt in %v", entries)
	}
	if info, _ := store.Info(ctx, desc.Digest); info.Labels[LabelUncompressed] != desc.Digest.String() {
		t.Errorf("uncompressed layer labelled %q, want its own digest", info.Labels[LabelUncompressed])
	}
}

// readLayer returns the entry names and mtimes of a stored layer.
func readLayer(t *testing.T, store content.Store, desc ocispec.Descriptor) map[string]time.Time {
	t.Helper()
	ra, err := store.ReaderAt(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rc, _, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]time.Time{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(hdr.Name, "/")] = hdr.ModTime
	}
}
