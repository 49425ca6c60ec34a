package native

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// copier copies a directory tree keeping everything a layer carries:
// owners, modes (setuid and friends), extended attributes (capabilities,
// ACLs), times, hard links, symlinks and device nodes. File data is
// reflinked where the filesystem can (FICLONE), else copied range by range
// skipping holes, so sparse files stay sparse.
type copier struct {
	links   map[inode]string // first copy of each hard-linked inode
	reflink bool             // FICLONE has not failed yet
}

type inode struct{ dev, ino uint64 }

// copyTree copies the contents and attributes of the directory src into
// the existing directory dst.
func copyTree(ctx context.Context, src, dst string) error {
	c := &copier{links: map[inode]string{}, reflink: true}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	if err := c.copyDir(ctx, src, dst); err != nil {
		return err
	}
	return copyAttrs(src, dst, &st)
}

func (c *copier) copyDir(ctx context.Context, src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", src, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.copyEntry(ctx, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) copyEntry(ctx context.Context, src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdir(dst, 0o700); err != nil {
			return fmt.Errorf("create directory %s: %w", dst, err)
		}
		// Attributes come after the contents: adding entries would change
		// the times, and a read-only mode would block them.
		if err := c.copyDir(ctx, src, dst); err != nil {
			return err
		}
	case unix.S_IFREG:
		key := inode{uint64(st.Dev), st.Ino}
		if first, ok := c.links[key]; ok {
			if err := unix.Link(first, dst); err != nil {
				return fmt.Errorf("hard-link %s to %s: %w", dst, first, err)
			}
			return nil // one inode: its attributes are already set
		}
		if st.Nlink > 1 {
			c.links[key] = dst
		}
		if err := c.copyFile(src, dst, st.Size); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("read symlink %s: %w", src, err)
		}
		if err := unix.Symlink(target, dst); err != nil {
			return fmt.Errorf("create symlink %s: %w", dst, err)
		}
	default: // devices, fifos, sockets
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("create special file %s: %w", dst, err)
		}
	}
	return copyAttrs(src, dst, &st)
}

func (c *copier) copyFile(src, dst string, size int64) error {
	in, err := unix.Open(src, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer unix.Close(in)
	out, err := unix.Open(dst, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	err = c.copyData(in, out, size)
	if cerr := unix.Close(out); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

func (c *copier) copyData(in, out int, size int64) error {
	if c.reflink {
		err := unix.IoctlFileClone(out, in)
		if err == nil {
			return nil
		}
		// Any failure means this filesystem (pair) cannot clone; stop
		// asking for the rest of the tree.
		c.reflink = false
	}
	return copySparse(in, out, size)
}

// copySparse copies the data ranges of in, found with SEEK_DATA and
// SEEK_HOLE, and sets the size, which leaves holes unallocated.
func copySparse(in, out int, size int64) error {
	for off := int64(0); off < size; {
		data, err := unix.Seek(in, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			// No hole support: copy the rest as data.
			return copyRange(in, out, off, size-off)
		}
		hole, err := unix.Seek(in, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("find hole: %w", err)
		}
		hole = min(hole, size)
		if err := copyRange(in, out, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return unix.Ftruncate(out, size)
}

// copyRange copies n bytes at off with copy_file_range, in the kernel,
// falling back to read and write where it is refused.
func copyRange(in, out int, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		done, err := unix.CopyFileRange(in, &roff, out, &woff, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return copyRangeRW(in, out, roff, n)
		}
		if done == 0 {
			return fmt.Errorf("source ended %d bytes early", n)
		}
		n -= int64(done)
	}
	return nil
}

func copyRangeRW(in, out int, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		r, err := unix.Pread(in, buf[:min(n, int64(len(buf)))], off)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if r == 0 {
			return fmt.Errorf("source ended %d bytes early", n)
		}
		if _, err := unix.Pwrite(out, buf[:r], off); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		off += int64(r)
		n -= int64(r)
	}
	return nil
}

// copyAttrs gives dst the owner, mode, extended attributes and times of
// src. The owner goes first because chown clears setuid bits and file
// capabilities, which the mode and xattrs then restore.
func copyAttrs(src, dst string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", dst, err)
	}
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if !isLink {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	times := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", dst, err)
	}
	return nil
}

func copyXattrs(src, dst string) error {
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		value, err := getXattr(src, name)
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, name, value, 0); err != nil {
			return fmt.Errorf("set xattr %s on %s: %w", name, dst, err)
		}
	}
	return nil
}

func listXattrs(path string) ([]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	var names []string
	start := 0
	for i, b := range buf[:size] {
		if b == 0 {
			names = append(names, string(buf[start:i]))
			start = i + 1
		}
	}
	return names, nil
}

func getXattr(path, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(path, name, nil)
	if err != nil {
		return nil, fmt.Errorf("get xattr %s of %s: %w", name, path, err)
	}
	buf := make([]byte, size)
	size, err = unix.Lgetxattr(path, name, buf)
	if err != nil {
		return nil, fmt.Errorf("get xattr %s of %s: %w", name, path, err)
	}
	return buf[:size], nil
}
