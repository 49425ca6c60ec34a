package archive

import (
	"bytes"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procPath names entry name of the directory open as dirfd through
// /proc/self/fd, for the few calls that have no *at form (lsetxattr,
// llistxattr, lgetxattr). The magic link resolves to exactly that directory,
// and the l-variants do not follow name itself.
func procPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// procFd names the file open as fd through /proc/self/fd.
func procFd(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

// readDirNames lists directory dirfd (any descriptor of it, O_PATH included)
// sorted by name.
func readDirNames(dirfd int) ([]string, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// openDirAt opens directory name under dirfd without following a symlink.
func openDirAt(dirfd int, name string) (int, error) {
	return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// removeAllAt removes name under dirfd and, if it is a directory, everything
// below it. It never follows a symlink: symlinks are removed, not entered. A
// missing name is not an error.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, oerr := openDirAt(dirfd, name)
	if oerr != nil {
		return err
	}
	names, lerr := readDirNames(fd)
	if lerr == nil {
		for _, n := range names {
			if lerr = removeAllAt(fd, n); lerr != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if lerr != nil {
		return lerr
	}
	err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// listXattrs returns the extended attributes of the entry at path (not
// followed) as a sorted name→value map, or nil when it has none. Filesystems
// without xattr support count as having none.
func listXattrs(path string) (map[string]string, error) {
	buf := make([]byte, 256)
	var n int
	var err error
	for {
		n, err = unix.Llistxattr(path, buf)
		if err == unix.ERANGE {
			sz, serr := unix.Llistxattr(path, nil)
			if serr != nil {
				return nil, serr
			}
			buf = make([]byte, sz+64)
			continue
		}
		break
	}
	if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
		return nil, nil
	}
	if err != nil || n == 0 {
		return nil, err
	}
	attrs := make(map[string]string)
	for name := range bytes.SplitSeq(buf[:n], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		v, err := getXattr(path, string(name))
		if err == unix.ENODATA {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		attrs[string(name)] = v
	}
	if len(attrs) == 0 {
		return nil, nil
	}
	return attrs, nil
}

func getXattr(path, name string) (string, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if err == unix.ERANGE {
			sz, serr := unix.Lgetxattr(path, name, nil)
			if serr != nil {
				return "", serr
			}
			buf = make([]byte, sz+16)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}

// overlayXattr reports whether name is one of overlayfs's private
// attributes, which describe an upper directory to the kernel and must never
// travel in a layer (a layer could otherwise forge opaque markers or
// redirects into another layer's files).
func overlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}
