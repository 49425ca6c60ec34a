package mountspec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// ResolveDestination resolves dst, a mount destination inside the
// container, within rootfs (the container's root on the host) and creates
// it there as a directory when it is missing. Symlinks are followed as if
// rootfs were "/": an image symlink /data -> /etc leads to <rootfs>/etc,
// never the host's /etc, and ".." stops at rootfs. It returns the
// resolved destination as a path inside the container ("/etc" in that
// example), to be used as the runtime-spec mount's destination so that
// runc mounts exactly there; on the host it is filepath.Join(rootfs, it).
//
// The lookup is done in userspace (securejoin) and the creation by
// descriptors (mkdirat from the parent's handle), and the final place is
// read back from the kernel, so a symlink swapped in meanwhile cannot
// move the result out of rootfs. Call it before the container starts.
func ResolveDestination(rootfs, dst string) (string, error) {
	return resolveDestination(rootfs, dst, false)
}

// ResolveFileDestination is ResolveDestination for a bind of a file: a
// missing destination is created as an empty file (0644), and an existing
// directory there is an error.
func ResolveFileDestination(rootfs, dst string) (string, error) {
	return resolveDestination(rootfs, dst, true)
}

func resolveDestination(rootfs, dst string, file bool) (string, error) {
	h, resolved, err := openDestination(rootfs, dst, file)
	if err != nil {
		return "", err
	}
	h.Close()
	return resolved, nil
}

// openDestination resolves and creates dst inside rootfs as
// ResolveDestination says and returns an O_PATH handle of it with the
// resolved path inside the container.
func openDestination(rootfs, dst string, file bool) (*os.File, string, error) {
	clean, err := cleanDestination(dst)
	if err != nil {
		return nil, "", err
	}
	rootReal, err := filepath.EvalSymlinks(rootfs)
	if err != nil {
		return nil, "", fmt.Errorf("container root %s: %w", rootfs, err)
	}
	root, err := os.OpenFile(rootReal, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("open container root: %w", err)
	}
	defer root.Close()
	joined, err := securejoin.SecureJoin(rootReal, clean)
	if err != nil {
		return nil, "", fmt.Errorf("mount destination %s: %w", dst, err)
	}
	rel := strings.TrimPrefix(joined, rootReal)
	if rel == "" || rel == "/" {
		return nil, "", invalid("mount destination %s resolves to the container's root", dst)
	}
	var h *os.File
	if file {
		h, err = createFileIn(root, rel)
	} else {
		h, err = pathrs.MkdirAllHandle(root, rel, 0o755)
		if errors.Is(err, unix.ENOTDIR) {
			err = invalid("it exists and is not a directory")
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("mount destination %s (%s in the container): %w", dst, rel, err)
	}
	resolved, err := insideRoot(h, rootReal, dst)
	if err != nil {
		h.Close()
		return nil, "", err
	}
	return h, resolved, nil
}

// insideRoot reads where handle h really is and returns it as a path
// inside the root rootReal, failing if it is outside.
func insideRoot(h *os.File, rootReal, dst string) (string, error) {
	real, err := os.Readlink(procSelfFd(h))
	if err != nil {
		return "", fmt.Errorf("mount destination %s: %w", dst, err)
	}
	inside, ok := strings.CutPrefix(real, strings.TrimSuffix(rootReal, "/")+"/")
	if !ok {
		return "", invalid("mount destination %s resolved to %s, outside the container's root", dst, real)
	}
	return "/" + inside, nil
}

// createFileIn opens the file rel inside root with O_PATH, creating it
// (and its parent directories) when missing. rel has no symlinks left; a
// symlink found at its last component means the tree changed meanwhile.
func createFileIn(root *os.File, rel string) (*os.File, error) {
	dir, base := filepath.Split(rel)
	parent, err := pathrs.MkdirAllHandle(root, dir, 0o755)
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	pfd := int(parent.Fd())
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		cfd, cerr := unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if cerr != nil && cerr != unix.EEXIST {
			return nil, cerr
		}
		if cerr == nil {
			unix.Close(cfd)
		}
		fd, err = unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), base)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		f.Close()
		return nil, invalid("it is a directory but the mount source is a file")
	case unix.S_IFLNK:
		f.Close()
		return nil, fmt.Errorf("it became a symlink while being resolved: %w", errdefs.ErrFailedPrecondition)
	}
	return f, nil
}

func procSelfFd(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// BindSource is a checked bind mount source on the host.
type BindSource struct {
	// Path is the source's real path: absolute, cleaned, every symlink
	// resolved. Keep this, not the path the user gave.
	Path string
	// Dir says whether it is a directory (else a file: mount it over a
	// file, see ResolveFileDestination).
	Dir bool
}

// ResolveBindSource checks the host path of a bind mount: it must be
// absolute and exist. It returns the real path, so that what was checked
// is what gets mounted: a symlink in the given path is resolved once, now,
// rather than again when the container starts.
//
// Between this check and the mount a component of the real path could
// still be replaced by a symlink (by whoever can write to one of its
// directories). OpenBindSource closes that window: it re-walks the real
// path refusing every symlink and returns a descriptor that pins the file;
// BindInto mounts from that descriptor. A runtime that instead hands the
// path to runc should at least call OpenBindSource just before `runc
// create` (resolve and re-check), leaving only the moment between that
// check and runc's mount.
func ResolveBindSource(path string) (BindSource, error) {
	if !filepath.IsAbs(path) || strings.IndexByte(path, 0) >= 0 {
		return BindSource{}, invalid("bind source path %q is not absolute", path)
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(path))
	if errors.Is(err, os.ErrNotExist) {
		return BindSource{}, invalid("bind source path does not exist: %s", path)
	}
	if err != nil {
		return BindSource{}, fmt.Errorf("bind source path %s: %w", path, err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return BindSource{}, fmt.Errorf("bind source path %s: %w", path, err)
	}
	return BindSource{Path: real, Dir: st.IsDir()}, nil
}

// OpenBindSource opens the real path of a bind source (BindSource.Path)
// with O_PATH, one component at a time from "/" without following any
// symlink, so it fails if any component has become a symlink since the
// path was resolved. The descriptor pins the file: BindInto mounts exactly
// it.
func OpenBindSource(real string) (*os.File, error) {
	if !filepath.IsAbs(real) || filepath.Clean(real) != real {
		return nil, invalid("bind source %q is not a clean absolute path", real)
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for _, comp := range strings.Split(strings.TrimPrefix(real, "/"), "/") {
		if comp == "" {
			continue
		}
		next, err := unix.Openat(fd, comp, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("bind source %s: %s: %w", real, comp, err)
		}
		fd = next
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(fd)
			return nil, fmt.Errorf("bind source %s: %s became a symlink after the path was checked: %w", real, comp, errdefs.ErrFailedPrecondition)
		}
	}
	return os.NewFile(uintptr(fd), real), nil
}
