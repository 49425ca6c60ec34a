package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthd/berth/core/mount"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ErrUnsupported is wrapped by every error New returns because overlayfs
// cannot work in the given root on this host; the text that wraps it says
// why. The plugin layer turns it into a skip reason. It also matches
// errdefs.ErrNotImplemented.
var ErrUnsupported = fmt.Errorf("overlayfs unsupported: %w", errdefs.ErrNotImplemented)

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// moduleParams is where the loaded overlay module lists its parameters;
// each parameter doubles as the mount option that overrides it.
const moduleParams = "/sys/module/overlay/parameters"

// defaultOptions chooses the overlay options every overlay mount carries.
// Each is set only where the kernel knows it (its module parameter exists),
// so older kernels still mount:
//
//   - index=off: the inode index ties a layer to the overlay that first
//     used it (origin xattrs on the upper layer, EBUSY/ESTALE when a layer
//     is used by another mount). Committed layers are shared by many
//     overlays at once and never moved back, so the index only costs.
//   - redirect_dir=nofollow: a renamed lower directory is copied up whole
//     (rename(2) fails with EXDEV and tools fall back to copying) instead of
//     leaving a redirect xattr, so each committed layer is a plain tree a
//     differ can read, and redirects smuggled in by a layer tar are never
//     followed.
//   - metacopy=off: a metadata-only copy-up would leave files without
//     their data in the upper layer, which then would not stand alone as a
//     layer.
//
// Not used: userxattr (for unprivileged mounts; berthd runs as root and
// overlay's trusted.* xattrs are what image layers carry as whiteouts) and
// volatile (it gives up durability of the upper layer after a crash).
func defaultOptions() []string {
	var opts []string
	for _, o := range []struct{ param, option string }{
		{"index", "index=off"},
		{"redirect_dir", "redirect_dir=nofollow"},
		{"metacopy", "metacopy=off"},
	} {
		if _, err := os.Stat(filepath.Join(moduleParams, o.param)); err == nil {
			opts = append(opts, o.option)
		}
	}
	return opts
}

// Check reports whether overlay snapshots can live in root with the given
// mount options: the backing filesystem must return file types from
// readdir (d_type), which overlayfs needs to find whiteouts, and a real
// overlay with upper layer and whiteouts must mount there. Failures wrap
// ErrUnsupported.
func Check(root string, options []string) error {
	dir, err := os.MkdirTemp(root, "overlay-check-")
	if err != nil {
		return fmt.Errorf("create overlay check directory in %s: %w", root, err)
	}
	defer os.RemoveAll(dir)
	if err := checkDType(dir); err != nil {
		return err
	}
	return checkMount(dir, options)
}

// checkDType fails when the filesystem of dir reports DT_UNKNOWN for a
// regular file (xfs formatted with ftype=0, for one).
func checkDType(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o600); err != nil {
		return fmt.Errorf("write d_type probe: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return fmt.Errorf("read directory %s: %w", dir, err)
		}
		if n <= 0 {
			return fmt.Errorf("d_type probe missing from %s", dir)
		}
		if typ, ok := direntType(buf[:n], "probe"); ok {
			if typ == unix.DT_UNKNOWN {
				return unsupported("the filesystem of %s does not report file types in directory entries (d_type), which overlayfs needs", dir)
			}
			return nil
		}
	}
}

// direntType finds name among linux_dirent64 records and returns its type.
func direntType(buf []byte, name string) (byte, bool) {
	for len(buf) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < 19 || reclen > len(buf) {
			return 0, false
		}
		entry := buf[19:reclen]
		if i := bytes.IndexByte(entry, 0); i >= 0 && string(entry[:i]) == name {
			return buf[18], true
		}
		buf = buf[reclen:]
	}
	return 0, false
}

// checkMount mounts a two-layer overlay with an upper layer in dir, writes
// a file and deletes a lower one through it, and checks the upper layer
// got the file and a whiteout.
func checkMount(dir string, options []string) error {
	for _, d := range []string{"l1", "l2", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("create overlay check layer: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "l1", "gone"), nil, 0o644); err != nil {
		return fmt.Errorf("write overlay check file: %w", err)
	}
	m := mount.Mount{Type: "overlay", Source: "overlay", Options: append([]string{
		"lowerdir=" + filepath.Join(dir, "l2") + ":" + filepath.Join(dir, "l1"),
		"upperdir=" + filepath.Join(dir, "upper"),
		"workdir=" + filepath.Join(dir, "work"),
	}, options...)}
	merged := filepath.Join(dir, "merged")
	if err := m.Mount(merged); err != nil {
		return unsupported("test mount in %s failed: %v", dir, err)
	}
	err := useMount(merged)
	if uerr := mount.UnmountAll(merged, 0); uerr != nil {
		return fmt.Errorf("unmount overlay check: %w", uerr)
	}
	if err != nil {
		return err
	}
	return checkUpper(filepath.Join(dir, "upper"))
}

func useMount(merged string) error {
	if err := os.WriteFile(filepath.Join(merged, "new"), []byte("x"), 0o644); err != nil {
		return unsupported("cannot write through a test overlay: %v", err)
	}
	if err := os.Remove(filepath.Join(merged, "gone")); err != nil {
		return unsupported("cannot delete a lower file through a test overlay: %v", err)
	}
	return nil
}

// checkUpper looks for the written file and the whiteout (a 0:0 character
// device) that deleting the lower file must have left.
func checkUpper(upper string) error {
	if _, err := os.Stat(filepath.Join(upper, "new")); err != nil {
		return unsupported("a file written through a test overlay is not in its upper layer: %v", err)
	}
	var st unix.Stat_t
	err := unix.Lstat(filepath.Join(upper, "gone"), &st)
	if errors.Is(err, unix.ENOENT) {
		return unsupported("deleting a lower file through a test overlay left no whiteout in the upper layer")
	}
	if err != nil {
		return fmt.Errorf("stat overlay check whiteout: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		return unsupported("whiteouts here are not 0:0 character devices (mode %#o), as image layers expect", st.Mode)
	}
	return nil
}
