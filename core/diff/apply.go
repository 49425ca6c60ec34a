package diff

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/archive"
	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/mount"
)

// Differ is berth's differ over one content store: Apply with core/archive
// onto mounts, Compare with core/archive's tree walks (or the overlay upper
// directory alone when that is the diff). It implements Applier and
// Comparer.
type Differ struct {
	store  content.Store
	logger *slog.Logger
}

var (
	_ Applier  = (*Differ)(nil)
	_ Comparer = (*Differ)(nil)
)

// New returns a differ reading and writing blobs in store (in berthd the
// namespaced store of core/metadata, so the namespace and lease of each
// call's context apply).
func New(store content.Store) *Differ {
	return &Differ{store: store, logger: slog.Default()}
}

// Apply implements Applier.
//
// The blob's compression is recognised by its magic bytes once the media
// type is known to be a layer type, as containerd does: Docker archives are
// known to label uncompressed layers as gzip. When the mounts are a single
// writable overlay the layer goes straight into its upper directory with
// overlay whiteouts; a single writable bind mount is written through its
// source directory; anything else is mounted on a temporary directory and
// unmounted afterwards, whatever happens.
func (d *Differ) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...ApplyOpt) (ocispec.Descriptor, error) {
	start := time.Now()
	var cfg ApplyConfig
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, err)
		}
	}
	if _, err := compression.FromMediaType(desc.MediaType); err != nil {
		if len(cfg.Payloads) > 0 {
			err = fmt.Errorf("%w (stream processors for encrypted or custom layers are not supported)", err)
		}
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, err)
	}
	ra, err := d.store.ReaderAt(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: open blob: %w", desc.Digest, err)
	}
	defer ra.Close()
	rc, _, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, err)
	}
	defer rc.Close()

	h := digest.Canonical.Hash()
	size, err := d.applyStream(ctx, mounts, &hashReader{r: rc, h: h}, cfg.SyncFs)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s (%s): %w", desc.Digest, desc.MediaType, err)
	}
	got := digest.NewDigest(digest.Canonical, h)
	if cfg.DiffID != "" && got != cfg.DiffID {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: uncompressed content has digest %s, but the expected diff ID is %s: %w",
			desc.Digest, got, cfg.DiffID, errdefs.ErrFailedPrecondition)
	}
	d.logger.DebugContext(ctx, "layer applied", "digest", desc.Digest, "diff_id", got, "size", size,
		"media_type", desc.MediaType, "duration", time.Since(start))
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: got, Size: size}, nil
}

// applyStream extracts the tar r onto mounts (see Apply) and returns the
// bytes read from r.
func (d *Differ) applyStream(ctx context.Context, mounts []mount.Mount, r io.Reader, syncFs bool) (int64, error) {
	aopts := []archive.ApplyOpt{archive.WithLogger(d.logger)}
	if dir, mode, ok := applyTarget(mounts); ok {
		n, err := archive.Apply(ctx, dir, r, append(aopts, archive.WithWhiteoutMode(mode))...)
		if err == nil && syncFs {
			err = syncDir(dir)
		}
		return n, err
	}
	if len(mounts) == 0 {
		return 0, fmt.Errorf("no mounts to apply onto: %w", errdefs.ErrInvalidArgument)
	}
	var n int64
	err := mount.WithTempMount(mounts, func(root string) error {
		var err error
		if n, err = archive.Apply(ctx, root, r, aopts...); err != nil {
			return err
		}
		if syncFs {
			return syncDir(root)
		}
		return nil
	})
	return n, err
}

// syncDir flushes the filesystem holding dir.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// hashReader hashes what is read through it.
type hashReader struct {
	r io.Reader
	h hash.Hash
}

func (hr *hashReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	if n > 0 {
		hr.h.Write(p[:n])
	}
	return n, err
}

// isNotImplemented reports errdefs.ErrNotImplemented.
func isNotImplemented(err error) bool { return errors.Is(err, errdefs.ErrNotImplemented) }
