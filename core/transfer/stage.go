package transfer

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/archive"
	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/mount"
)

// stagedRootMode marks a staged directory's root as untouched by its
// layer: a layer that has a "./" entry sets the root's mode (and owner,
// times), which then must be carried over to the upper directory; one
// that has none leaves the upper directory's own (its parent's, as the
// snapshotter made it). No image sets a root to this mode.
const stagedRootMode = 0o101

// errCannotMove means a staged layer cannot be used for this snapshot; the
// applier then applies the blob as usual.
var errCannotMove = errors.New("staged layer cannot be moved into the snapshot")

// stage extracts layer into a new directory of the scratch folder in
// overlay whiteout mode, returning the directory, the layer's diff ID and
// its uncompressed size.
func (a *ahead) stage(layer ocispec.Descriptor) (string, digest.Digest, int64, error) {
	select {
	case a.slots <- struct{}{}:
	case <-a.ctx.Done():
		return "", "", 0, a.ctx.Err()
	}
	defer func() { <-a.slots }()
	ra, err := a.store.ReaderAt(a.ctx, layer)
	if err != nil {
		return "", "", 0, err
	}
	defer ra.Close()
	src := &progressReader{r: content.NewReader(ra), fn: func(n int64) { a.tr.extracting(layer, n) }}
	rc, _, err := compression.DecompressStream(src)
	if err != nil {
		return "", "", 0, err
	}
	defer rc.Close()
	dir, err := os.MkdirTemp(a.dir, "layer-*")
	if err != nil {
		return "", "", 0, err
	}
	if err := os.Chmod(dir, stagedRootMode); err != nil {
		os.Remove(dir)
		return "", "", 0, err
	}
	h := digest.Canonical.Hash()
	n, err := archive.Apply(a.ctx, dir, &hashingReader{r: rc, h: h}, archive.WithWhiteoutMode(archive.WhiteoutOverlay))
	if err != nil {
		os.RemoveAll(dir)
		return "", "", 0, fmt.Errorf("extract layer %s ahead: %w", layer.Digest, err)
	}
	return dir, digest.NewDigest(digest.Canonical, h), n, nil
}

type hashingReader struct {
	r io.Reader
	h hash.Hash
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	if n > 0 {
		hr.h.Write(p[:n])
	}
	return n, err
}

// applyStaged puts the staged extraction of layer into the upper directory
// of mounts, after checking its diff ID against the applier options. ok is
// false when there is no usable staged extraction: the caller applies the
// layer itself.
func (a *ahead) applyStaged(ctx context.Context, layer ocispec.Descriptor, mounts []mount.Mount, opts []diff.ApplyOpt) (out ocispec.Descriptor, ok bool, err error) {
	if a == nil {
		return out, false, nil
	}
	a.mu.Lock()
	pl, found := a.plain[layer.Digest]
	a.mu.Unlock()
	if !found || !pl.staged {
		return out, false, nil
	}
	select {
	case <-pl.done:
	case <-ctx.Done():
		return out, true, ctx.Err()
	}
	upper, isUpper := overlayUpperDir(mounts)
	if pl.err != nil || !isUpper {
		return out, false, nil
	}
	var cfg diff.ApplyConfig
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return out, true, fmt.Errorf("apply layer %s: %w", layer.Digest, err)
		}
	}
	if cfg.DiffID != "" && cfg.DiffID != pl.diffID {
		return out, true, fmt.Errorf("apply layer %s: uncompressed content has digest %s, but the expected diff ID is %s: %w",
			layer.Digest, pl.diffID, cfg.DiffID, errdefs.ErrFailedPrecondition)
	}
	if err := moveStaged(pl.path, upper); err != nil {
		if errors.Is(err, errCannotMove) {
			return out, false, nil
		}
		return out, true, fmt.Errorf("apply layer %s: %w", layer.Digest, err)
	}
	if cfg.SyncFs {
		if err := syncFs(upper); err != nil {
			return out, true, err
		}
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: pl.diffID, Size: pl.size}, true, nil
}

// overlayUpperDir returns the upper directory of a single writable overlay
// mount (the snapshot of a layer above the first, in overlayfs). Options
// with escapes are not parsed: such mounts take the usual path.
func overlayUpperDir(mounts []mount.Mount) (string, bool) {
	if len(mounts) != 1 || mounts[0].Type != "overlay" || mounts[0].Target != "" {
		return "", false
	}
	upper, lower := "", false
	for _, o := range mounts[0].Options {
		if strings.Contains(o, `\`) {
			return "", false
		}
		key, value, _ := strings.Cut(o, "=")
		switch key {
		case "upperdir":
			upper = value
		case "lowerdir":
			lower = value != ""
		case "lowerdir+", "datadir+":
			return "", false
		}
	}
	return upper, upper != "" && lower
}

// moveStaged moves the entries of the staged directory into the empty
// upper directory on the same filesystem, and the root's metadata when the
// layer set it; the staged directory is removed. errCannotMove means
// nothing was changed.
func moveStaged(staged, upper string) error {
	var sst, ust unix.Stat_t
	if err := unix.Lstat(staged, &sst); err != nil {
		return fmt.Errorf("%w: %v", errCannotMove, err)
	}
	if err := unix.Lstat(upper, &ust); err != nil || ust.Dev != sst.Dev || ust.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%w: %s is not a directory on the scratch folder's filesystem", errCannotMove, upper)
	}
	if ents, err := os.ReadDir(upper); err != nil || len(ents) > 0 {
		return fmt.Errorf("%w: %s is not empty", errCannotMove, upper)
	}
	names, err := dirNames(staged)
	if err != nil {
		return fmt.Errorf("%w: %v", errCannotMove, err)
	}
	sfd, err := unix.Open(staged, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", errCannotMove, err)
	}
	defer unix.Close(sfd)
	ufd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", errCannotMove, err)
	}
	defer unix.Close(ufd)
	for _, name := range names {
		if err := unix.Renameat(sfd, name, ufd, name); err != nil {
			return fmt.Errorf("move staged entry %q into %s: %w", name, upper, err)
		}
	}
	if err := copyRootMeta(staged, upper, &sst); err != nil {
		return err
	}
	return os.Remove(staged)
}

func dirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// copyRootMeta gives upper what the layer set on its root: xattrs (an
// opaque marker) always, owner, mode and times when it had a "./" entry.
func copyRootMeta(staged, upper string, sst *unix.Stat_t) error {
	attrs, err := xattrs(staged)
	if err != nil {
		return fmt.Errorf("read staged root xattrs: %w", err)
	}
	for k, v := range attrs {
		if err := unix.Lsetxattr(upper, k, v, 0); err != nil {
			return fmt.Errorf("set root xattr %q on %s: %w", k, upper, err)
		}
	}
	if sst.Mode&07777 == stagedRootMode {
		return nil
	}
	if err := unix.Lchown(upper, int(sst.Uid), int(sst.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", upper, err)
	}
	if err := unix.Chmod(upper, sst.Mode&07777); err != nil {
		return fmt.Errorf("chmod %s: %w", upper, err)
	}
	ts := []unix.Timespec{sst.Atim, sst.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, upper, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", upper, err)
	}
	return nil
}

func xattrs(path string) (map[string][]byte, error) {
	sz, err := unix.Llistxattr(path, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, sz)
	if sz, err = unix.Llistxattr(path, buf); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, k := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if k == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(path, k, nil)
		if err != nil {
			return nil, err
		}
		v := make([]byte, vsz)
		if vsz, err = unix.Lgetxattr(path, k, v); err != nil {
			return nil, err
		}
		out[k] = v[:vsz]
	}
	return out, nil
}

func syncFs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
