package testsuite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Change is one filesystem change applied under a root directory.
type Change func(root string) error

// apply runs changes in order under root.
func apply(root string, changes ...Change) error {
	for _, c := range changes {
		if err := c(root); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile creates or replaces a file with content and mode.
func WriteFile(path, content string, mode os.FileMode) Change {
	return func(root string) error {
		p := filepath.Join(root, path)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
		return os.Chmod(p, mode)
	}
}

// Mkdir creates a directory with mode.
func Mkdir(path string, mode os.FileMode) Change {
	return func(root string) error {
		p := filepath.Join(root, path)
		if err := os.Mkdir(p, mode); err != nil {
			return err
		}
		return os.Chmod(p, mode)
	}
}

// Remove deletes a file or a whole tree.
func Remove(path string) Change {
	return func(root string) error {
		p := filepath.Join(root, path)
		if _, err := os.Lstat(p); err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		return os.RemoveAll(p)
	}
}

// Rename moves a file.
func Rename(from, to string) Change {
	return func(root string) error {
		return os.Rename(filepath.Join(root, from), filepath.Join(root, to))
	}
}

// Symlink creates path pointing at target (not resolved).
func Symlink(target, path string) Change {
	return func(root string) error {
		return os.Symlink(target, filepath.Join(root, path))
	}
}

// Link hard-links path to existing.
func Link(existing, path string) Change {
	return func(root string) error {
		return os.Link(filepath.Join(root, existing), filepath.Join(root, path))
	}
}

// Chown changes the owner of path, not following a symlink.
func Chown(path string, uid, gid int) Change {
	return func(root string) error {
		return os.Lchown(filepath.Join(root, path), uid, gid)
	}
}

// Chmod changes the mode of path, setuid, setgid and sticky bits included.
func Chmod(path string, mode uint32) Change {
	return func(root string) error {
		return unix.Chmod(filepath.Join(root, path), mode)
	}
}

// Mknod creates a device or fifo (mode carries the type bits).
func Mknod(path string, mode uint32, major, minor uint32) Change {
	return func(root string) error {
		return unix.Mknod(filepath.Join(root, path), mode, int(unix.Mkdev(major, minor)))
	}
}

// Setxattr sets an extended attribute on path.
func Setxattr(path, name, value string) Change {
	return func(root string) error {
		return unix.Lsetxattr(filepath.Join(root, path), name, []byte(value), 0)
	}
}

// entry is what the comparison looks at for one path: type and mode bits,
// owner, content or link target, device number, user xattrs, and which
// other paths share its inode. Times are left out: the reference tree is
// built at another moment.
type entry struct {
	mode     uint32
	uid, gid uint32
	rdev     uint64
	data     string
	xattrs   string
	links    string
}

func (e entry) String() string {
	return fmt.Sprintf("mode=%#o owner=%d:%d rdev=%d data=%q xattrs=%q links=%q", e.mode, e.uid, e.gid, e.rdev, e.data, e.xattrs, e.links)
}

// scan reads the tree at root into entries by relative path.
func scan(root string) (map[string]entry, error) {
	tree := map[string]entry{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		e, ino, err := readEntry(path)
		if err != nil {
			return err
		}
		if e.mode&unix.S_IFMT != unix.S_IFDIR {
			inodes[ino] = append(inodes[ino], rel)
		}
		tree[rel] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, paths := range inodes {
		if len(paths) < 2 {
			continue
		}
		sort.Strings(paths)
		for _, p := range paths {
			e := tree[p]
			e.links = strings.Join(paths, ",")
			tree[p] = e
		}
	}
	return tree, nil
}

func readEntry(path string) (entry, uint64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return entry{}, 0, fmt.Errorf("lstat %s: %w", path, err)
	}
	e := entry{mode: st.Mode, uid: st.Uid, gid: st.Gid}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		b, err := os.ReadFile(path)
		if err != nil {
			return entry{}, 0, err
		}
		e.data = string(b)
	case unix.S_IFLNK:
		target, err := os.Readlink(path)
		if err != nil {
			return entry{}, 0, err
		}
		e.data = target
	case unix.S_IFCHR, unix.S_IFBLK:
		e.rdev = st.Rdev
	}
	x, err := userXattrs(path)
	if err != nil {
		return entry{}, 0, err
	}
	e.xattrs = x
	return e, st.Ino, nil
}

// userXattrs renders the user.* extended attributes of path; other
// namespaces belong to the system (security labels) or to overlayfs.
func userXattrs(path string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		val := make([]byte, 4096)
		m, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			return "", fmt.Errorf("get xattr %s of %s: %w", name, path, err)
		}
		out = append(out, name+"="+string(val[:m]))
	}
	sort.Strings(out)
	return strings.Join(out, ";"), nil
}

// checkTree compares the tree at dir with a reference tree built by
// applying changes to an empty directory under scratch.
func checkTree(dir, scratch string, changes ...Change) error {
	ref, err := os.MkdirTemp(scratch, "reference-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ref)
	if err := os.Chmod(ref, 0o755); err != nil {
		return err
	}
	if err := apply(ref, changes...); err != nil {
		return fmt.Errorf("build reference tree: %w", err)
	}
	want, err := scan(ref)
	if err != nil {
		return err
	}
	got, err := scan(dir)
	if err != nil {
		return err
	}
	return diffTrees(got, want)
}

func diffTrees(got, want map[string]entry) error {
	var problems []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: missing (want %v)", p, w))
		case g != w:
			problems = append(problems, fmt.Sprintf("%s: got %v, want %v", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			problems = append(problems, fmt.Sprintf("%s: unexpected (%v)", p, g))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return fmt.Errorf("trees differ:\n\t%s", strings.Join(problems, "\n\t"))
}

// readFile returns the content of root/path, or an error naming it.
func readFile(root, path string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		return "", err
	}
	return string(b), nil
}
