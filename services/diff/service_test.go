package diff

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	api "github.com/containerd/containerd/api/services/diff/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/protoconv"
	"github.com/berthd/berth/internal/testutil/require"
)

// setup returns the service over a differ on a fresh store holding the
// busybox test image, and that image's layer and diff ID.
func setup(t *testing.T) (*Service, content.Store, ocispec.Descriptor, string) {
	t.Helper()
	require.Root(t)
	img, err := testimages.Busybox()
	if err != nil {
		require.Missing(t, err.Error())
	}
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = img.Walk(func(desc ocispec.Descriptor, data []byte) error {
		return content.WriteBlob(context.Background(), store, desc.Digest.String(), bytes.NewReader(data), desc)
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := img.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	return New(diff.New(store)), store, r.Manifest.Layers[0], r.Config.RootFS.DiffIDs[0].String()
}

func bindMount(dir string, mode string) []*types.Mount {
	return []*types.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", mode}}}
}

func TestApplyAndDiff(t *testing.T) {
	svc, store, layer, diffID := setup(t)
	ctx := context.Background()
	base := t.TempDir()
	resp, err := svc.Apply(ctx, &api.ApplyRequest{Diff: protoconv.DescriptorToProto(layer), Mounts: bindMount(base, "rw"), SyncFs: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Applied.Digest != diffID || resp.Applied.MediaType != ocispec.MediaTypeImageLayer {
		t.Fatalf("applied %+v, want diff ID %s", resp.Applied, diffID)
	}
	if err := testimages.BusyboxExpected().Check(base); err != nil {
		t.Fatal(err)
	}

	// Diff of the tree against nothing, as ctr snapshots diff and commit
	// do, compressed as asked and labelled.
	epoch := time.Unix(1_600_000_000, 0)
	dresp, err := svc.Diff(ctx, &api.DiffRequest{
		Right: bindMount(base, "ro"), MediaType: ocispec.MediaTypeImageLayerZstd, Ref: "diff-test",
		Labels: map[string]string{"made-by": "test"}, SourceDateEpoch: timestamppb.New(epoch),
	})
	if err != nil {
		t.Fatal(err)
	}
	if dresp.Diff.MediaType != ocispec.MediaTypeImageLayerZstd {
		t.Fatalf("diff media type %q", dresp.Diff.MediaType)
	}
	dgst, err := protoconv.Digest("diff.digest", dresp.Diff.Digest)
	if err != nil {
		t.Fatal(err)
	}
	info, err := store.Info(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels["made-by"] != "test" || info.Labels[diff.LabelUncompressed] == "" || info.Size != dresp.Diff.Size {
		t.Fatalf("diff blob %+v", info)
	}

	// The new layer applies onto an empty directory to the same tree.
	again := t.TempDir()
	resp, err = svc.Apply(ctx, &api.ApplyRequest{Diff: dresp.Diff, Mounts: bindMount(again, "rw")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Applied.Digest != info.Labels[diff.LabelUncompressed] {
		t.Fatalf("re-applied diff ID %s, label %s", resp.Applied.Digest, info.Labels[diff.LabelUncompressed])
	}
	if err := testimages.BusyboxExpected().Check(again); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(again, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.ModTime().After(epoch) {
		t.Errorf("bin/busybox dated %v, after the source date epoch", fi.ModTime())
	}
}

func TestErrors(t *testing.T) {
	svc, _, layer, _ := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	cases := []struct {
		name string
		call func() error
		want error
		text string
	}{
		{"no descriptor", func() error {
			_, err := svc.Apply(ctx, &api.ApplyRequest{Mounts: bindMount(dir, "rw")})
			return err
		}, errdefs.ErrInvalidArgument, "diff is required"},
		{"bad digest", func() error {
			_, err := svc.Apply(ctx, &api.ApplyRequest{Diff: &types.Descriptor{MediaType: layer.MediaType, Digest: "sha256:nope"}, Mounts: bindMount(dir, "rw")})
			return err
		}, errdefs.ErrInvalidArgument, "diff.digest"},
		{"encrypted layer with payloads", func() error {
			d := protoconv.DescriptorToProto(layer)
			d.MediaType += "+encrypted"
			_, err := svc.Apply(ctx, &api.ApplyRequest{Diff: d, Mounts: bindMount(dir, "rw"),
				Payloads: map[string]*anypb.Any{"io.containerd.ocicrypt.decoder.v1.tar.gzip": {TypeUrl: "x", Value: []byte("k")}}})
			return err
		}, errdefs.ErrNotImplemented, "stream processors"},
		{"unknown diff media type", func() error {
			_, err := svc.Diff(ctx, &api.DiffRequest{Right: bindMount(dir, "ro"), MediaType: "application/x-tar"})
			return err
		}, errdefs.ErrNotImplemented, "application/x-tar"},
		{"empty label key", func() error {
			_, err := svc.Diff(ctx, &api.DiffRequest{Right: bindMount(dir, "ro"), Labels: map[string]string{"": "v"}})
			return err
		}, errdefs.ErrInvalidArgument, "label"},
		{"no upper mounts", func() error {
			_, err := svc.Diff(ctx, &api.DiffRequest{Left: bindMount(dir, "ro")})
			return err
		}, errdefs.ErrInvalidArgument, "upper"},
		{"no differ", func() error {
			_, err := New().Diff(ctx, &api.DiffRequest{Right: bindMount(dir, "ro")})
			return err
		}, errdefs.ErrNotImplemented, "no differ"},
	}
	for _, c := range cases {
		err := c.call()
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: error %v, want %v mentioning %q", c.name, err, c.want, c.text)
		}
	}
}
