package archive

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berthd/berth/internal/testutil/require"
)

// TestGNUTarInterop checks both directions against GNU tar: what tar writes
// (POSIX format with xattrs) Apply extracts faithfully, and what WriteDiff
// writes tar extracts faithfully.
func TestGNUTarInterop(t *testing.T) {
	require.Root(t)
	require.Binary(t, "tar")
	base := t.TempDir()
	src := buildParent(t, filepath.Join(base, "src"))
	mutate(t, src, false)

	// GNU tar → Apply.
	tarFile := filepath.Join(base, "gnu.tar")
	out, err := exec.Command("tar", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner",
		"-cf", tarFile, "-C", src, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("tar -c: %v: %s", err, out)
	}
	f, err := os.Open(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	viaApply := filepath.Join(base, "apply")
	if err := os.Mkdir(viaApply, 0o755); err != nil {
		t.Fatal(err)
	}
	apply(t, viaApply, f)
	if got, want := treeSecs(t, viaApply), treeSecs(t, src); got != want {
		t.Fatalf("Apply of GNU tar's archive differs:\n%s", lineDiff(want, got))
	}

	// WriteDiff → GNU tar.
	var layer bytes.Buffer
	if err := WriteDiff(context.Background(), &layer, "", src); err != nil {
		t.Fatal(err)
	}
	viaTar := filepath.Join(base, "tarx")
	if err := os.Mkdir(viaTar, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", "-", "-C", viaTar)
	cmd.Stdin = &layer
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v: %s", err, out)
	}
	if got, want := treeSecs(t, viaTar), treeSecs(t, src); got != want {
		t.Fatalf("GNU tar extraction of WriteDiff's layer differs:\n%s", lineDiff(want, got))
	}
}
