package transfer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/require"
	"github.com/berthd/berth/snapshotters/overlay"
)

// stagingLayers are the multi-layer test image's layers (whiteouts, an
// opaque directory, hard links, devices, owners, a file replacing a
// directory) and one more whose tar sets the root itself ("./", another
// mode and owner) and makes it opaque.
func stagingLayers(t *testing.T) []testimages.Layer {
	t.Helper()
	ml, err := testimages.MultiLayer()
	if err != nil {
		require.Missing(t, err.Error())
	}
	tars, err := ml.LayerTars("")
	if err != nil {
		t.Fatal(err)
	}
	var layers []testimages.Layer
	for _, tb := range tars {
		layers = append(layers, testimages.Layer{Tar: tb, DiffID: digest.FromBytes(tb)})
	}
	root, err := testimages.RawLayer(
		testimages.Raw(tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000}, nil),
		testimages.Opaque(""),
		testimages.File("only.txt", []byte("the root was made opaque\n"), 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	return append(layers, root)
}

type chainEnv struct {
	t      *testing.T
	ctx    context.Context
	store  *local.Store
	layers []ocispec.Descriptor
	diffs  []digest.Digest
	chain  []digest.Digest
}

func newChainEnv(t *testing.T) *chainEnv {
	t.Helper()
	require.Root(t)
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &chainEnv{t: t, ctx: context.Background(), store: store}
	for _, l := range stagingLayers(t) {
		desc, data, err := l.Compress(testimages.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		if err := content.WriteBlob(e.ctx, store, "t-"+desc.Digest.Encoded(), bytes.NewReader(data), desc); err != nil {
			t.Fatal(err)
		}
		e.layers = append(e.layers, desc)
		e.diffs = append(e.diffs, l.DiffID)
	}
	e.chain = images.ChainIDs(e.diffs)
	return e
}

func (e *chainEnv) snapshotter(root string) snapshots.Snapshotter {
	e.t.Helper()
	sn, err := overlay.New(root, overlay.WithSyncRemove())
	if errors.Is(err, overlay.ErrUnsupported) {
		require.Missing(e.t, "overlayfs: "+err.Error())
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { sn.Close() })
	return sn
}

// unpack commits the chain into sn, applying layer i with apply.
func (e *chainEnv) unpack(sn snapshots.Snapshotter, apply func(i int, mounts []mount.Mount) (ocispec.Descriptor, error)) {
	e.t.Helper()
	for i := range e.layers {
		key := fmt.Sprintf("extract-%d", i)
		parent := ""
		if i > 0 {
			parent = e.chain[i-1].String()
		}
		mounts, err := sn.Prepare(e.ctx, key, parent)
		if err != nil {
			e.t.Fatal(err)
		}
		out, err := apply(i, mounts)
		if err != nil {
			e.t.Fatalf("layer %d: %v", i, err)
		}
		if out.Digest != e.diffs[i] {
			e.t.Fatalf("layer %d applied as %s, diff ID %s", i, out.Digest, e.diffs[i])
		}
		if err := sn.Commit(e.ctx, e.chain[i].String(), key); err != nil {
			e.t.Fatal(err)
		}
	}
}

// layerDir is the directory of committed layer i (the top lower directory
// of a view of it).
func (e *chainEnv) layerDir(sn snapshots.Snapshotter, i int) string {
	e.t.Helper()
	key := fmt.Sprintf("view-%d-%p", i, sn)
	mounts, err := sn.View(e.ctx, key, e.chain[i].String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { sn.Remove(e.ctx, key) })
	if mounts[0].Type == "bind" {
		return mounts[0].Source
	}
	for _, o := range mounts[0].Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			return strings.Split(v, ":")[0]
		}
	}
	e.t.Fatalf("view mounts %+v", mounts)
	return ""
}

// An overlayfs layer extracted ahead and moved into its snapshot is the
// same, entry for entry, as one applied into the snapshot directly.
func TestStagedLayersMatchAppliedOnes(t *testing.T) {
	e := newChainEnv(t)
	dir := t.TempDir()
	differ := diff.New(e.store)
	direct := e.snapshotter(filepath.Join(dir, "direct"))
	e.unpack(direct, func(i int, mounts []mount.Mount) (ocispec.Descriptor, error) {
		return differ.Apply(e.ctx, e.layers[i], mounts, diff.WithDiffID(e.diffs[i]))
	})

	scratch := filepath.Join(dir, "scratch")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	a := newAhead(e.ctx, scratch, e.store, make(chan struct{}, 2), true, nil)
	defer a.close()
	manifest := ocispec.Descriptor{Digest: digest.FromString("manifest")}
	a.manifest(manifest, ocispec.Manifest{Layers: e.layers})
	for i, l := range e.layers {
		a.landed(manifest, i, l)
	}
	staged := e.snapshotter(filepath.Join(dir, "staged"))
	used := 0
	e.unpack(staged, func(i int, mounts []mount.Mount) (ocispec.Descriptor, error) {
		defer a.done(e.layers[i])
		out, ok, err := a.applyStaged(e.ctx, e.layers[i], mounts, []diff.ApplyOpt{diff.WithDiffID(e.diffs[i])})
		if ok {
			used++
			return out, err
		}
		return differ.Apply(e.ctx, e.layers[i], mounts, diff.WithDiffID(e.diffs[i]))
	})
	if used != len(e.layers)-1 {
		t.Errorf("%d layers moved from the scratch folder, want every one above the first (%d)", used, len(e.layers)-1)
	}
	for i := range e.layers {
		if err := sameTree(e.layerDir(direct, i), e.layerDir(staged, i)); err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
	}
	if left, _ := os.ReadDir(scratch); len(left) != 0 {
		t.Errorf("scratch entries left: %v", left)
	}
}

// A staged layer with the wrong diff ID is refused; one whose snapshot is
// not an overlay upper directory is left to the applier.
func TestStagedLayerChecks(t *testing.T) {
	e := newChainEnv(t)
	scratch := t.TempDir()
	a := newAhead(e.ctx, scratch, e.store, make(chan struct{}, 1), true, nil)
	defer a.close()
	manifest := ocispec.Descriptor{Digest: digest.FromString("manifest")}
	a.manifest(manifest, ocispec.Manifest{Layers: e.layers})
	a.landed(manifest, 1, e.layers[1])
	upper := t.TempDir()
	mounts := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"upperdir=" + upper, "lowerdir=" + t.TempDir()}}}

	_, ok, err := a.applyStaged(e.ctx, e.layers[1], mounts, []diff.ApplyOpt{diff.WithDiffID(digest.FromString("other"))})
	if !ok || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("wrong diff ID: ok=%v err=%v", ok, err)
	}
	if ents, _ := os.ReadDir(upper); len(ents) != 0 {
		t.Errorf("a refused layer was moved: %v", ents)
	}
	bind := []mount.Mount{{Type: "bind", Source: upper, Options: []string{"rw", "rbind"}}}
	if _, ok, _ := a.applyStaged(e.ctx, e.layers[1], bind, nil); ok {
		t.Error("a staged layer was used for a bind mount")
	}
	if _, ok, _ := a.applyStaged(e.ctx, e.layers[2], mounts, nil); ok {
		t.Error("a layer never staged was reported staged")
	}
}

// sameTree compares two directory trees: entry names, types, modes,
// owners, devices, link counts, link targets, xattrs, file contents and
// (below the root, whiteouts aside) modification times.
func sameTree(a, b string) error {
	ta, err := describeTree(a)
	if err != nil {
		return err
	}
	tb, err := describeTree(b)
	if err != nil {
		return err
	}
	for p, da := range ta {
		if db, ok := tb[p]; !ok {
			return fmt.Errorf("%s only in the directly applied layer", p)
		} else if da != db {
			return fmt.Errorf("%s differs:\n applied %s\n staged  %s", p, da, db)
		}
	}
	for p := range tb {
		if _, ok := ta[p]; !ok {
			return fmt.Errorf("%s only in the staged layer", p)
		}
	}
	return nil
}

func describeTree(root string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		d := fmt.Sprintf("mode=%o uid=%d gid=%d rdev=%d nlink=%d", st.Mode, st.Uid, st.Gid, st.Rdev, st.Nlink)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			d = fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
		}
		// Whiteouts are dated when made, whichever way.
		whiteout := st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
		if rel != "." && !whiteout {
			d += fmt.Sprintf(" mtime=%d", st.Mtim.Nano())
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			d += " -> " + target
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			d += fmt.Sprintf(" sha256=%x", sha256.Sum256(data))
		}
		attrs, err := xattrs(p)
		if err != nil {
			return err
		}
		for k, v := range attrs {
			d += fmt.Sprintf(" %s=%q", k, v)
		}
		out[rel] = d
		return nil
	})
	return out, err
}
