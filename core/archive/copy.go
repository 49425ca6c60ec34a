package archive

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// CopyOpt configures TarPath.
type CopyOpt func(*copyOptions)

type copyOptions struct {
	followLink bool
	diff       []DiffOpt
}

// WithFollowLink makes TarPath archive what a final symlink points to (inside
// root) instead of the link itself, like `docker cp -L`.
func WithFollowLink() CopyOpt {
	return func(o *copyOptions) { o.followLink = true }
}

// TarPath writes path, a file or directory inside root, to w as a tar whose
// top entry is named by path's last component (a directory with its whole
// tree under it); path "/" gives root's content with no top entry. path is
// resolved inside root as if root were "/", so symlinks in it cannot lead
// out, and the tree is read through directory descriptors, so a running
// container swapping a directory for a symlink meanwhile cannot either.
func TarPath(ctx context.Context, w io.Writer, root, path string, opts ...CopyOpt) error {
	var o copyOptions
	for _, opt := range opts {
		opt(&o)
	}
	rel, err := cleanRel(path)
	if err != nil {
		return fmt.Errorf("copy path %q: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	r, err := openRoot(root)
	if err != nil {
		return err
	}
	defer r.close()
	if o.followLink && rel != "." {
		if rel, err = r.resolve(rel); err != nil {
			return fmt.Errorf("copy path %q: %w", path, err)
		}
	}
	lw := newLayerWriter(ctx, w, diffOpts(o.diff))
	wk := newWalker(ctx, lw.change)
	if rel == "." {
		err = wk.compareDir(-1, r.fd, ".")
	} else {
		err = tarEntry(r, wk, rel, path)
	}
	if err != nil {
		return err
	}
	return lw.close()
}

func tarEntry(r *root, wk *walker, rel, path string) error {
	dir, base := splitRel(rel)
	pfd, err := r.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return copyErr(path, err)
	}
	defer unix.Close(pfd)
	n := &node{pfd: pfd, name: base, rel: base}
	if err := unix.Fstatat(pfd, base, &n.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return copyErr(path, err)
	}
	return wk.addTree(n)
}

func copyErr(path string, err error) error {
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return fmt.Errorf("copy path %q: %w", path, errdefs.ErrNotFound)
	}
	return fmt.Errorf("copy path %q: %w", path, err)
}

// resolve follows every symlink of rel inside root and returns the real
// path relative to root.
func (r *root) resolve(rel string) (string, error) {
	fd, err := r.open(rel, unix.O_PATH)
	if err != nil {
		if err == unix.ENOENT || err == unix.ENOTDIR {
			return "", errdefs.ErrNotFound
		}
		return "", err
	}
	defer unix.Close(fd)
	real, err := os.Readlink(procFd(fd))
	if err != nil {
		return "", err
	}
	rootReal, err := os.Readlink(procFd(r.fd))
	if err != nil {
		return "", err
	}
	if real == rootReal {
		return ".", nil
	}
	inside, ok := strings.CutPrefix(real, strings.TrimSuffix(rootReal, "/")+"/")
	if !ok {
		return "", fmt.Errorf("resolved path %q is not under the root: %w", real, errdefs.ErrInvalidArgument)
	}
	return inside, nil
}

// UntarInto extracts the tar r under dest, a directory inside root, with the
// protections of Apply: names are relative to dest and may not climb above
// it, and symlinks met on the way resolve inside root (as the container
// sees them) and never outside. Entries named ".wh.*" are plain files here.
// It returns the bytes read from r.
func UntarInto(ctx context.Context, root, dest string, r io.Reader, opts ...ApplyOpt) (int64, error) {
	rel, err := cleanRel(dest)
	if err != nil {
		return 0, fmt.Errorf("copy destination %q: %v: %w", dest, err, errdefs.ErrInvalidArgument)
	}
	rt, err := openRoot(root)
	if err != nil {
		return 0, err
	}
	defer rt.close()
	if rel != "." {
		// Extract under the directory dest really is, so a symlink as its
		// last component is followed once (inside root) and not replaced.
		if rel, err = rt.resolve(rel); err != nil {
			return 0, fmt.Errorf("copy destination %q: %w", dest, err)
		}
		fd, err := rt.open(rel, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return 0, fmt.Errorf("copy destination %q is not a directory: %w", dest, errdefs.ErrInvalidArgument)
		}
		unix.Close(fd)
	}
	all := append([]ApplyOpt{func(o *applyOptions) {
		o.whiteouts = whiteoutLiteral
	}}, opts...)
	all = append(all, func(o *applyOptions) { o.prefix = rel })
	return Apply(ctx, root, r, all...)
}
