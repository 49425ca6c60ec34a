package archive

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testutil/require"
)

// mountOverlay mounts lowers (topmost first) with upper at a new directory
// and unmounts it when the test ends.
func mountOverlay(t *testing.T, base string, lowers []string, upper string) string {
	t.Helper()
	work, merged := filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{work, merged, upper} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		require.Missing(t, fmt.Sprintf("overlayfs (mount: %v)", err))
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	})
	return merged
}

func TestOverlayLayers(t *testing.T) {
	require.Root(t)
	base := t.TempDir()
	l1, l2 := filepath.Join(base, "l1"), filepath.Join(base, "l2")
	for i, layer := range [][]byte{baseLayer(t), secondLayer(t)} {
		dir := []string{l1, l2}[i]
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		apply(t, dir, bytes.NewReader(layer), WithWhiteoutMode(WhiteoutOverlay))
	}
	// The stacked overlay layers must show exactly what applying the same
	// layers with removal gives: whited-out and opaque content hidden.
	ref := buildParent(t, filepath.Join(base, "ref"))
	upper := filepath.Join(base, "upper")
	merged := mountOverlay(t, base, []string{l2, l1}, upper)
	if got, want := treeOf(t, merged), treeOf(t, ref); got != want {
		t.Fatalf("overlay of layers differs from removal apply:\n%s", lineDiff(want, got))
	}
	for _, hidden := range []string{"etc/hostname", "var/cache/a", "var/cache/sub"} {
		if exists(filepath.Join(merged, hidden)) {
			t.Errorf("%s shows through its whiteout", hidden)
		}
	}

	mutate(t, merged, true)

	// The upper directory's layer turns the parent into the merged view.
	var layer bytes.Buffer
	if err := WriteOverlayDiff(context.Background(), &layer, upper); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, layer.Bytes())
	for _, want := range []string{"opt/.wh.app", "var/cache/.wh.new", "lib/.wh..wh..opq"} {
		if _, ok := names[want]; !ok {
			t.Errorf("overlay diff lacks %s", want)
		}
	}
	for name := range names {
		if strings.Contains(name, "work") {
			t.Errorf("overlay diff has %s", name)
		}
	}
	target := buildParent(t, filepath.Join(base, "target"))
	apply(t, target, bytes.NewReader(layer.Bytes()))
	if got, want := treeSecs(t, target), treeSecs(t, merged); got != want {
		t.Fatalf("parent + overlay diff differs from the merged view:\n%s", lineDiff(want, got))
	}
	for _, marker := range []string{"lib"} {
		if v, err := getXattr(filepath.Join(upper, marker), overlayOpaqueXattr); err != nil || v != "y" {
			t.Fatalf("test premise: %s is not opaque in upper (%q, %v)", marker, v, err)
		}
		attrs, err := listXattrs(filepath.Join(target, marker))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := attrs[overlayOpaqueXattr]; ok {
			t.Errorf("overlay's xattr leaked into %s", marker)
		}
	}

	// The generic diff of the mounted view against the parent does too.
	generic := writeDiff(t, ref, merged)
	target2 := buildParent(t, filepath.Join(base, "target2"))
	apply(t, target2, bytes.NewReader(generic))
	if got, want := treeSecs(t, target2), treeSecs(t, merged); got != want {
		t.Fatalf("parent + generic diff differs from the merged view:\n%s", lineDiff(want, got))
	}

	// Both ways of listing changes agree.
	collect := func(run func(fn func(Change) error) error) string {
		var out []string
		if err := run(func(c Change) error { out = append(out, c.Kind.String()+" "+c.Path); return nil }); err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, "\n")
	}
	ctx := context.Background()
	fromOverlay := collect(func(fn func(Change) error) error { return OverlayChanges(ctx, upper, ref, fn) })
	fromTrees := collect(func(fn func(Change) error) error { return Changes(ctx, ref, merged, fn) })
	if fromOverlay != fromTrees {
		t.Fatalf("OverlayChanges:\n%s\nChanges:\n%s", fromOverlay, fromTrees)
	}
	for _, want := range []string{"D /opt/app", "A /etc/hostname", "C /lib", "A /lib/ld.so", "C /etc/passwd", "D /var/cache/new", "A /new/deep/er/file"} {
		if !strings.Contains("\n"+fromTrees+"\n", "\n"+want+"\n") {
			t.Errorf("changes lack %q:\n%s", want, fromTrees)
		}
	}
}

func TestWriteOverlayDiffRefusesRedirects(t *testing.T) {
	require.Root(t)
	upper := t.TempDir()
	if err := os.Mkdir(filepath.Join(upper, "moved"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "moved"), overlayRedirectXattr, []byte("/orig"), 0); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err := WriteOverlayDiff(context.Background(), &buf, upper)
	if err == nil || !strings.Contains(err.Error(), "moved") {
		t.Fatalf("redirect dir: err %v", err)
	}
}
