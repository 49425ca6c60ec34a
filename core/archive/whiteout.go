package archive

import (
	"archive/tar"
	"fmt"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// whiteout applies a ".wh.*" entry found in directory dir.
func (a *applier) whiteout(hdr *tar.Header, dir, base string) error {
	if base == whiteoutOpaque {
		if a.opts.whiteouts == WhiteoutOverlay {
			return a.overlayOpaque(hdr, dir)
		}
		return a.removeOpaque(hdr, dir)
	}
	if len(base) >= len(whiteoutMeta) && base[:len(whiteoutMeta)] == whiteoutMeta {
		// Other ".wh..wh.*" names are aufs bookkeeping (hard link dirs,
		// temp files), meaningless outside aufs.
		a.opts.logger.DebugContext(a.ctx, "ignoring aufs metadata entry", "entry", hdr.Name)
		return nil
	}
	name := base[len(whiteoutPrefix):]
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("layer entry %q: whiteout of %q is not a valid name: %w", hdr.Name, name, errdefs.ErrInvalidArgument)
	}
	if a.opts.whiteouts == WhiteoutOverlay {
		return a.overlayWhiteout(hdr, dir, name)
	}
	return a.removeWhiteout(hdr, dir, name)
}

// removeWhiteout deletes dir/name as an earlier layer made it. A path this
// layer adds itself is kept: a whiteout only hides lower layers.
func (a *applier) removeWhiteout(hdr *tar.Header, dir, name string) error {
	if a.isAdded(joinRel(dir, name)) {
		return nil
	}
	pfd, err := a.root.dir(dir, false, nil)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil // nothing there to hide
	}
	if err != nil {
		return entryErr(hdr, "whiteout parent", err)
	}
	if err := removeAllAt(pfd, name); err != nil {
		return entryErr(hdr, "remove whited-out path", err)
	}
	return nil
}

// removeOpaque empties dir of everything earlier layers put there, keeping
// whatever this layer has added to it (entries that come later in the tar
// are not there yet, so they are kept too).
func (a *applier) removeOpaque(hdr *tar.Header, dir string) error {
	fd, err := a.root.open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil
	}
	if err != nil {
		return entryErr(hdr, "opaque directory", err)
	}
	defer unix.Close(fd)
	// The cached parent may lie inside what is about to go.
	a.root.invalidate()
	if err := a.prune(fd, dir); err != nil {
		return entryErr(hdr, "empty opaque directory", err)
	}
	return nil
}

func (a *applier) prune(dfd int, rel string) error {
	names, err := readDirNames(dfd)
	if err != nil {
		return err
	}
	for _, name := range names {
		child := joinRel(rel, name)
		if !a.isAdded(child) {
			if err := removeAllAt(dfd, name); err != nil {
				return err
			}
			continue
		}
		cfd, err := openDirAt(dfd, name)
		if err != nil {
			continue // an added non-directory: kept as is
		}
		err = a.prune(cfd, child)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// overlayWhiteout writes dir/name as overlayfs's whiteout: a character
// device with device number 0/0.
func (a *applier) overlayWhiteout(hdr *tar.Header, dir, name string) error {
	pfd, err := a.root.dir(dir, true, nil)
	if err != nil {
		return entryErr(hdr, "whiteout parent", err)
	}
	err = unix.Mknodat(pfd, name, unix.S_IFCHR, 0)
	if err == unix.EEXIST {
		if _, err = a.replaceable(pfd, name, false); err == nil {
			err = unix.Mknodat(pfd, name, unix.S_IFCHR, 0)
		}
	}
	if err != nil {
		return entryErr(hdr, "create overlay whiteout", err)
	}
	return a.owner(pfd, name, hdr)
}

// overlayOpaque marks dir opaque for overlayfs, creating it if the tar has
// not yet.
func (a *applier) overlayOpaque(hdr *tar.Header, dir string) error {
	fd, err := a.root.dir(dir, true, nil)
	if err != nil {
		return entryErr(hdr, "opaque directory", err)
	}
	// The O_PATH descriptor's /proc link leads to the directory itself.
	if err := unix.Setxattr(procFd(fd), overlayOpaqueXattr, []byte("y"), 0); err != nil {
		return entryErr(hdr, "set "+overlayOpaqueXattr, err)
	}
	return nil
}
