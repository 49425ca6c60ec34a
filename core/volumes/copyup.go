package volumes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/archive"
)

// CopyUp fills an empty volume with what the container's image holds where
// the volume is mounted, as Docker does: when dataDir (the volume's host
// path, from Store.Mount) is empty and dst (a path inside the container)
// is a directory in rootfs, its whole tree is copied into dataDir keeping
// owners, modes, times, extended attributes, symlinks, hard links and
// devices, and dataDir takes the owner and mode of that directory. It
// reports whether it copied. A volume that holds anything is left alone,
// so only the first mount over a new volume copies; a missing dst or one
// that is not a directory copies nothing. Mounts with nocopy skip it.
//
// dst is resolved inside rootfs (symlinks as if rootfs were "/"), so an
// image cannot make the copy read the host's files, and the tree is read
// through descriptors without following its symlinks. Call it before the
// container starts, while nothing else writes to dataDir.
func CopyUp(ctx context.Context, rootfs, dst, dataDir string) (bool, error) {
	empty, err := isEmptyDir(dataDir)
	if err != nil || !empty {
		return false, err
	}
	src, err := openDirInRoot(rootfs, dst)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("copy up %s: %w", dst, err)
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return false, fmt.Errorf("copy up %s: %w", dst, err)
	}
	// The descriptor's /proc/self/fd link names exactly the directory
	// resolved above, whatever happens to the path meanwhile.
	srcPath := "/proc/self/fd/" + strconv.Itoa(int(src.Fd()))
	if err := copyTree(ctx, srcPath, dataDir); err != nil {
		return false, fmt.Errorf("copy up %s into volume: %w", dst, err)
	}
	if err := os.Lchown(dataDir, int(st.Uid), int(st.Gid)); err != nil {
		return false, fmt.Errorf("copy up %s: set owner of volume: %w", dst, err)
	}
	if err := unix.Chmod(dataDir, st.Mode&07777); err != nil {
		return false, fmt.Errorf("copy up %s: set mode of volume: %w", dst, err)
	}
	return true, nil
}

// copyTree streams src's content as a tar into dst: archive's reader and
// applier already walk by descriptor and refuse to leave their roots.
func copyTree(ctx context.Context, src, dst string) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := archive.TarPath(ctx, pw, src, "/")
		pw.CloseWithError(err)
		done <- err
	}()
	_, err := archive.UntarInto(ctx, dst, "/", pr, archive.WithSameOwner(true))
	// Unblock the writer if the reader stopped early, and wait for it: src
	// names a descriptor the caller closes once this returns.
	pr.CloseWithError(io.ErrClosedPipe)
	if werr := <-done; err == nil && werr != nil {
		err = werr
	}
	return err
}

// openDirInRoot opens directory dst resolved inside rootfs with O_PATH.
func openDirInRoot(rootfs, dst string) (*os.File, error) {
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := pathrs.OpenatInRoot(root, dst)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		f.Close()
		return nil, unix.ENOTDIR
	}
	return f, nil
}

// isEmptyDir reports whether directory dir has no entries.
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("open volume data: %w", err)
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if err == io.EOF {
		return true, nil
	}
	return false, err
}
