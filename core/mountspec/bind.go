package mountspec

import (
	"fmt"
	"os"
	"path/filepath"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/mount"
)

// BindInto bind-mounts src, a bind source opened with OpenBindSource, at
// dst inside rootfs (resolved and created as ResolveDestination or, for a
// file, ResolveFileDestination do), before the container starts. Both ends
// are named by descriptor (/proc/self/fd), so neither a symlink swapped into
// the host path nor one inside the rootfs can redirect the mount. The mount
// is recursive, with propagation ("" means rprivate), read-only if asked;
// it returns the resolved destination inside the container.
//
// This is the race-free way for the runtime to give a container a bind:
// runc copies the rootfs with its submounts into the container's mount
// namespace (it bind-mounts the rootfs recursively), so the bind needs no
// entry in the runtime spec. runc itself cannot mount from a descriptor of
// another process: the kernel refuses (EINVAL) to bind a mount that
// belongs to another mount namespace. The runtime must unmount the rootfs
// recursively when it tears the container down.
func BindInto(src *os.File, rootfs, dst string, readonly bool, propagation string) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return "", fmt.Errorf("bind source %s: %w", src.Name(), err)
	}
	h, resolved, err := openDestination(rootfs, dst, st.Mode&unix.S_IFMT != unix.S_IFDIR)
	if err != nil {
		return "", err
	}
	defer h.Close()
	if err := unix.Mount(procSelfFd(src), procSelfFd(h), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("bind %s at %s: %w", src.Name(), resolved, err)
	}
	if err := setupBind(rootfs, resolved, readonly, propagation); err != nil {
		unix.Unmount(filepath.Join(rootfs, resolved), unix.MNT_DETACH)
		return "", fmt.Errorf("bind %s at %s: %w", src.Name(), resolved, err)
	}
	return resolved, nil
}

// setupBind sets the propagation and access mode of the bind just mounted
// at resolved. The destination's handle still names what the mount now
// covers, so the new mount is looked up again inside rootfs.
func setupBind(rootfs, resolved string, readonly bool, propagation string) error {
	if propagation == "" {
		propagation = "rprivate"
	}
	flags, _ := mount.ParseOptions([]string{propagation})
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer root.Close()
	top, err := pathrs.OpenatInRoot(root, resolved)
	if err != nil {
		return err
	}
	defer top.Close()
	if err := unix.Mount("", procSelfFd(top), "", flags, ""); err != nil {
		return fmt.Errorf("set propagation %s: %w", propagation, err)
	}
	if readonly {
		if err := unix.Mount("", procSelfFd(top), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make read-only: %w", err)
		}
	}
	return nil
}
