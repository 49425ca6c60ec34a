package archive

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// root is a directory that every path of an archive operation is resolved
// inside. Lookups use openat2(2) with RESOLVE_IN_ROOT: symlinks (absolute or
// relative) and ".." are resolved as if root were "/", by the kernel and free
// of races, so no component can lead outside. Kernels without openat2 fall
// back to filepath-securejoin's userspace equivalent.
type root struct {
	path string
	file *os.File // owns fd
	fd   int      // O_PATH directory descriptor of path

	// The last parent directory looked up stays open: tar streams list the
	// entries of one directory together, so most lookups hit it. Anything
	// that removes or replaces a path must call invalidate.
	cacheRel string
	cacheFd  int
	cacheSt  unix.Stat_t
	stValid  bool
}

// dirStat returns the status of the cached directory fd (from dir), read
// once until forgetStat or a different directory is looked up.
func (r *root) dirStat(fd int) (*unix.Stat_t, error) {
	if fd != r.cacheFd {
		return nil, unix.EINVAL
	}
	if !r.stValid {
		if err := unix.Fstat(fd, &r.cacheSt); err != nil {
			return nil, err
		}
		r.stValid = true
	}
	return &r.cacheSt, nil
}

// forgetStat drops the cached directory status after its owner changed.
func (r *root) forgetStat() { r.stValid = false }

func openRoot(path string) (*root, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open root", Path: path, Err: err}
	}
	return &root{path: path, file: os.NewFile(uintptr(fd), path), fd: fd, cacheFd: -1}, nil
}

func (r *root) close() {
	r.invalidate()
	r.file.Close()
}

func (r *root) invalidate() {
	if r.cacheFd >= 0 {
		unix.Close(r.cacheFd)
		r.cacheFd = -1
		r.cacheRel = ""
		r.stValid = false
	}
}

// noOpenat2 is set the first time the kernel answers ENOSYS.
var noOpenat2 atomic.Bool

// open resolves rel (a cleaned relative path, "." for root) inside root and
// opens it with flags. O_NOFOLLOW in flags applies to the last component only,
// as with open(2).
func (r *root) open(rel string, flags int) (int, error) {
	if !noOpenat2.Load() {
		how := unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		}
		for range 16 {
			fd, err := unix.Openat2(r.fd, rel, &how)
			switch err {
			case unix.EINTR, unix.EAGAIN:
				// EAGAIN: a concurrent rename or mount raced with ".."
				// resolution; the kernel asks for a retry.
				continue
			case unix.ENOSYS:
				noOpenat2.Store(true)
				return r.openFallback(rel, flags)
			}
			return fd, err
		}
		return -1, unix.EAGAIN
	}
	return r.openFallback(rel, flags)
}

func (r *root) openFallback(rel string, flags int) (int, error) {
	rootFile := r.file
	var h *os.File
	var err error
	if flags&unix.O_NOFOLLOW != 0 {
		// securejoin always follows a trailing symlink, so resolve the
		// parent and open the last component relative to it.
		dir, base := splitRel(rel)
		h, err = pathrs.OpenatInRoot(rootFile, dir)
		if err == nil {
			defer h.Close()
			return unix.Openat(int(h.Fd()), base, flags|unix.O_CLOEXEC, 0)
		}
	} else {
		h, err = pathrs.OpenatInRoot(rootFile, rel)
	}
	if err != nil {
		return -1, unwrapErrno(err)
	}
	defer h.Close()
	if flags&unix.O_PATH != 0 {
		return unix.Dup(int(h.Fd()))
	}
	re, err := pathrs.Reopen(h, flags)
	if err != nil {
		return -1, unwrapErrno(err)
	}
	fd, err := unix.Dup(int(re.Fd()))
	re.Close()
	return fd, err
}

func unwrapErrno(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// dir returns an O_PATH descriptor of directory rel, owned by the cache (the
// caller must not close it). With create, missing directories are made with
// mode 0755 and reported to created.
func (r *root) dir(rel string, create bool, created func(rel string)) (int, error) {
	if rel == r.cacheRel && r.cacheFd >= 0 {
		return r.cacheFd, nil
	}
	fd, err := r.open(rel, unix.O_PATH|unix.O_DIRECTORY)
	if err == unix.ENOENT && create {
		fd, err = r.mkdirAll(rel, created)
	}
	if err != nil {
		return -1, err
	}
	r.invalidate()
	r.cacheRel, r.cacheFd = rel, fd
	r.stValid = false
	return fd, nil
}

// mkdirAll creates rel and its missing ancestors inside root. Each component
// is looked up from root again, so a symlink among them is still resolved
// inside root.
func (r *root) mkdirAll(rel string, created func(rel string)) (int, error) {
	parent := -1
	defer func() {
		if parent >= 0 {
			unix.Close(parent)
		}
	}()
	prefix := ""
	for comp := range strings.SplitSeq(rel, "/") {
		cur := comp
		if prefix != "" {
			cur = prefix + "/" + comp
		}
		fd, err := r.open(cur, unix.O_PATH|unix.O_DIRECTORY)
		if err == unix.ENOENT {
			pfd := parent
			if prefix == "" {
				pfd = r.fd
			}
			if err = unix.Mkdirat(pfd, comp, 0o755); err == nil || err == unix.EEXIST {
				if err == nil {
					// The umask must not decide the mode of implied
					// directories.
					_ = chmodAt(pfd, comp, 0o755)
					if created != nil {
						created(cur)
					}
				}
				fd, err = r.open(cur, unix.O_PATH|unix.O_DIRECTORY)
			}
		}
		if err != nil {
			return -1, fmt.Errorf("create directory %q: %w", cur, err)
		}
		if parent >= 0 {
			unix.Close(parent)
		}
		parent = fd
		prefix = cur
	}
	fd := parent
	parent = -1
	return fd, nil
}

// splitRel splits a cleaned relative path into its directory and last
// component; the directory of a top-level name is ".".
func splitRel(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return ".", rel
	}
	return rel[:i], rel[i+1:]
}

// joinRel joins a cleaned relative directory and a name.
func joinRel(dir, name string) string {
	if name == "." {
		if dir == "" {
			return "."
		}
		return dir
	}
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

// cleanRel turns an archive member name into a path relative to root.
// Leading "/" and "." components are dropped and ".." is applied lexically;
// a name whose ".." would climb above root is refused. The result never
// starts with "/" and is "." for root itself.
func cleanRel(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("name %q contains a NUL byte", name)
	}
	parts := make([]string, 0, strings.Count(name, "/")+1)
	for p := range strings.SplitSeq(name, "/") {
		switch p {
		case "", ".":
		case "..":
			if len(parts) == 0 {
				return "", fmt.Errorf("name %q escapes the root", name)
			}
			parts = parts[:len(parts)-1]
		default:
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return ".", nil
	}
	return strings.Join(parts, "/"), nil
}
