package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ChangeKind says how a path differs between two trees.
type ChangeKind int

const (
	// ChangeAdd is a path only the upper tree has.
	ChangeAdd ChangeKind = iota + 1
	// ChangeModify is a path both have, with different content or metadata
	// (or a directory with a changed path below it).
	ChangeModify
	// ChangeDelete is a path only the lower tree has.
	ChangeDelete
)

// String returns docker diff's letter: A, C or D.
func (k ChangeKind) String() string {
	switch k {
	case ChangeAdd:
		return "A"
	case ChangeModify:
		return "C"
	case ChangeDelete:
		return "D"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// node is one entry met by a walk. pfd, its parent directory's descriptor,
// stays open for as long as the node can be handed out.
type node struct {
	pfd    int
	name   string
	rel    string
	st     unix.Stat_t
	opaque bool // an overlayfs opaque directory

	// attrs caches all xattrs of the entry, overlayfs's included, once read.
	attrs     map[string]string
	attrsRead bool
}

// rawXattrs returns every xattr of n, read once.
func (n *node) rawXattrs() (map[string]string, error) {
	if !n.attrsRead {
		attrs, err := listXattrs(procPath(n.pfd, n.name))
		if err != nil {
			return nil, fmt.Errorf("xattrs of %q: %w", n.rel, err)
		}
		n.attrs, n.attrsRead = attrs, true
	}
	return n.attrs, nil
}

func (n *node) isDir() bool { return n.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// emitter hands changes out in walk order and makes sure the directories
// above a change are handed out (as modified) before it, once.
type emitter struct {
	fn      func(ChangeKind, *node) error
	stack   []*node
	emitted []bool
}

func (e *emitter) push(n *node, emitted bool) {
	e.stack = append(e.stack, n)
	e.emitted = append(e.emitted, emitted)
}

func (e *emitter) pop() {
	e.stack = e.stack[:len(e.stack)-1]
	e.emitted = e.emitted[:len(e.emitted)-1]
}

func (e *emitter) emit(kind ChangeKind, n *node) error {
	for i, done := range e.emitted {
		if !done {
			if err := e.fn(ChangeModify, e.stack[i]); err != nil {
				return err
			}
			e.emitted[i] = true
		}
	}
	return e.fn(kind, n)
}

// walker compares trees through directory descriptors, never following a
// symlink, so a tree that changes under it cannot lead it elsewhere.
type walker struct {
	ctx  context.Context
	em   emitter
	bufA []byte
	bufB []byte
}

func newWalker(ctx context.Context, fn func(ChangeKind, *node) error) *walker {
	return &walker{ctx: ctx, em: emitter{fn: fn}}
}

func statNode(pfd int, name, rel string) (*node, error) {
	n := &node{pfd: pfd, name: name, rel: rel}
	if err := unix.Fstatat(pfd, name, &n.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, fmt.Errorf("stat %q: %w", rel, err)
	}
	return n, nil
}

// compareDir reports the differences between directory lfd (-1: absent) and
// directory ufd, both at rel.
func (w *walker) compareDir(lfd, ufd int, rel string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	var lnames []string
	if lfd >= 0 {
		var err error
		if lnames, err = readDirNames(lfd); err != nil {
			return fmt.Errorf("list lower %q: %w", rel, err)
		}
	}
	unames, err := readDirNames(ufd)
	if err != nil {
		return fmt.Errorf("list upper %q: %w", rel, err)
	}
	i, j := 0, 0
	for i < len(lnames) || j < len(unames) {
		switch {
		case j == len(unames) || i < len(lnames) && lnames[i] < unames[j]:
			ln, err := statNode(lfd, lnames[i], joinRel(rel, lnames[i]))
			if err != nil {
				return err
			}
			if err := w.em.emit(ChangeDelete, ln); err != nil {
				return err
			}
			i++
		case i == len(lnames) || unames[j] < lnames[i]:
			un, err := statNode(ufd, unames[j], joinRel(rel, unames[j]))
			if err != nil {
				return err
			}
			if err := w.addTree(un); err != nil {
				return err
			}
			j++
		default:
			if err := w.compareEntry(lfd, ufd, lnames[i], joinRel(rel, lnames[i])); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

func (w *walker) compareEntry(lfd, ufd int, name, rel string) error {
	ln, err := statNode(lfd, name, rel)
	if err != nil {
		return err
	}
	un, err := statNode(ufd, name, rel)
	if err != nil {
		return err
	}
	if ln.st.Mode&unix.S_IFMT != un.st.Mode&unix.S_IFMT {
		if err := w.em.emit(ChangeModify, un); err != nil {
			return err
		}
		if un.isDir() {
			return w.addChildren(un)
		}
		return nil
	}
	if un.isDir() {
		changed, err := metaDiffers(ln, un)
		if err != nil {
			return err
		}
		if changed {
			if err := w.em.emit(ChangeModify, un); err != nil {
				return err
			}
		}
		return w.descend(ln, un, changed, w.compareDir)
	}
	same, err := w.sameFile(ln, un)
	if err != nil || same {
		return err
	}
	return w.em.emit(ChangeModify, un)
}

// descend opens directory nodes ln (nil: none) and un and runs fn on them
// with un on the parent stack.
func (w *walker) descend(ln, un *node, emitted bool, fn func(lfd, ufd int, rel string) error) error {
	ufd, err := openDirAt(un.pfd, un.name)
	if err != nil {
		return fmt.Errorf("open %q: %w", un.rel, err)
	}
	defer unix.Close(ufd)
	lfd := -1
	if ln != nil {
		if lfd, err = openDirAt(ln.pfd, ln.name); err != nil {
			return fmt.Errorf("open lower %q: %w", ln.rel, err)
		}
		defer unix.Close(lfd)
	}
	w.em.push(un, emitted)
	defer w.em.pop()
	return fn(lfd, ufd, un.rel)
}

// addTree reports n and everything below it as added.
func (w *walker) addTree(n *node) error {
	if err := w.em.emit(ChangeAdd, n); err != nil {
		return err
	}
	if n.isDir() {
		return w.addChildren(n)
	}
	return nil
}

func (w *walker) addChildren(n *node) error {
	return w.descend(nil, n, true, func(_, ufd int, rel string) error {
		return w.compareDir(-1, ufd, rel)
	})
}

// metaDiffers compares what a directory's identity is beyond its content:
// type and mode, owner, xattrs. A directory's mtime only reflects that its
// entries changed, which the walk reports itself.
func metaDiffers(l, u *node) (bool, error) {
	if l.st.Mode != u.st.Mode || l.st.Uid != u.st.Uid || l.st.Gid != u.st.Gid {
		return true, nil
	}
	lx, err := nodeXattrs(l)
	if err != nil {
		return false, err
	}
	ux, err := nodeXattrs(u)
	if err != nil {
		return false, err
	}
	return !maps.Equal(lx, ux), nil
}

// nodeXattrs returns n's xattrs without overlayfs's private ones.
func nodeXattrs(n *node) (map[string]string, error) {
	raw, err := n.rawXattrs()
	if err != nil || raw == nil {
		return nil, err
	}
	attrs := maps.Clone(raw)
	maps.DeleteFunc(attrs, func(k, _ string) bool { return overlayXattr(k) })
	return attrs, nil
}

// sameFile decides whether two non-directories are the same. Like docker and
// containerd: metadata, size and mtime must match; when both mtimes have no
// sub-second part (as after extraction from a tar, which may have truncated
// them), equal mtimes prove nothing and the content is compared.
func (w *walker) sameFile(l, u *node) (bool, error) {
	if changed, err := metaDiffers(l, u); err != nil || changed {
		return false, err
	}
	if l.st.Dev == u.st.Dev && l.st.Ino == u.st.Ino {
		return true, nil
	}
	if l.st.Size != u.st.Size || l.st.Rdev != u.st.Rdev || l.st.Mtim.Sec != u.st.Mtim.Sec {
		return false, nil
	}
	switch l.st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		lt, err := readlinkAt(l.pfd, l.name)
		if err != nil {
			return false, err
		}
		ut, err := readlinkAt(u.pfd, u.name)
		if err != nil {
			return false, err
		}
		if lt != ut {
			return false, nil
		}
	case unix.S_IFREG:
		if l.st.Mtim.Nsec == 0 && u.st.Mtim.Nsec == 0 && l.st.Size > 0 {
			return w.sameContent(l, u)
		}
	}
	return l.st.Mtim.Nsec == u.st.Mtim.Nsec, nil
}

func (w *walker) sameContent(l, u *node) (bool, error) {
	lf, err := openFileAt(l.pfd, l.name)
	if err != nil {
		return false, fmt.Errorf("open lower %q: %w", l.rel, err)
	}
	defer unix.Close(lf)
	uf, err := openFileAt(u.pfd, u.name)
	if err != nil {
		return false, fmt.Errorf("open %q: %w", u.rel, err)
	}
	defer unix.Close(uf)
	if w.bufA == nil {
		w.bufA, w.bufB = make([]byte, 256<<10), make([]byte, 256<<10)
	}
	for {
		n, err := io.ReadFull(fdReader(lf), w.bufA)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return false, fmt.Errorf("read lower %q: %w", l.rel, err)
		}
		m, err2 := io.ReadFull(fdReader(uf), w.bufB[:n])
		if err2 != nil && err2 != io.ErrUnexpectedEOF && err2 != io.EOF {
			return false, fmt.Errorf("read %q: %w", u.rel, err2)
		}
		if m != n || !bytes.Equal(w.bufA[:n], w.bufB[:n]) {
			return false, nil
		}
		if n < len(w.bufA) {
			return true, nil
		}
	}
}

// fdReader reads a raw descriptor without wrapping it in an os.File.
type fdReader int

func (f fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func openFileAt(dirfd int, name string) (int, error) {
	return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
}

func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", fmt.Errorf("readlink %q: %w", name, err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// Overlay upper directories.

const (
	overlayRedirectXattr = "trusted.overlay.redirect"
	overlayMetacopyXattr = "trusted.overlay.metacopy"
	userOpaqueXattr      = "user.overlay.opaque"
)

// isOverlayWhiteout reports overlayfs's whiteout: a 0/0 character device.
func isOverlayWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// overlayState reads the overlayfs markers of an upper entry: whether a
// directory is opaque; redirects and metacopy files, which only make sense
// together with the lower layers, are refused.
func overlayState(n *node) (opaque bool, err error) {
	attrs, err := n.rawXattrs()
	if err != nil {
		return false, err
	}
	for _, k := range []string{overlayRedirectXattr, overlayMetacopyXattr, "user.overlay.redirect", "user.overlay.metacopy"} {
		if _, ok := attrs[k]; ok {
			return false, fmt.Errorf("overlay upper entry %q has %s (mount option redirect_dir or metacopy): %w", n.rel, k, errdefs.ErrNotImplemented)
		}
	}
	return n.isDir() && (attrs[overlayOpaqueXattr] == "y" || attrs[userOpaqueXattr] == "y"), nil
}

// overlayDir walks overlay upper directory ufd at rel. With withLower, lfd is
// the same directory in the lower view (-1 when it has none) and is used to
// tell additions from modifications and to skip whiteouts of nothing.
func (w *walker) overlayDir(lfd, ufd int, rel string, withLower bool) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	names, err := readDirNames(ufd)
	if err != nil {
		return fmt.Errorf("list upper %q: %w", rel, err)
	}
	for _, name := range names {
		un, err := statNode(ufd, name, joinRel(rel, name))
		if err != nil {
			return err
		}
		var ln *node
		if withLower && lfd >= 0 {
			if ln, err = statNode(lfd, name, un.rel); err != nil {
				ln = nil
			}
		}
		if isOverlayWhiteout(&un.st) {
			if withLower && ln == nil {
				continue
			}
			if err := w.em.emit(ChangeDelete, un); err != nil {
				return err
			}
			continue
		}
		if un.opaque, err = overlayState(un); err != nil {
			return err
		}
		if err := w.overlayEntry(ln, un, withLower); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) overlayEntry(ln, un *node, withLower bool) error {
	kind := ChangeAdd
	if ln != nil {
		kind = ChangeModify
	}
	if !un.isDir() {
		return w.em.emit(kind, un)
	}
	switch {
	case !withLower:
		if err := w.em.emit(ChangeAdd, un); err != nil {
			return err
		}
		return w.descend(nil, un, true, func(_, ufd int, rel string) error {
			return w.overlayDir(-1, ufd, rel, false)
		})
	case ln == nil || !ln.isDir():
		if err := w.em.emit(kind, un); err != nil {
			return err
		}
		return w.descend(nil, un, true, func(_, ufd int, rel string) error {
			return w.overlayDir(-1, ufd, rel, true)
		})
	}
	changed, err := metaDiffers(ln, un)
	if err != nil {
		return err
	}
	if changed {
		if err := w.em.emit(ChangeModify, un); err != nil {
			return err
		}
	}
	if un.opaque {
		// Nothing of the lower directory shows through: compare the
		// whole subtree.
		return w.descend(ln, un, changed, w.compareDir)
	}
	return w.descend(ln, un, changed, func(lfd, ufd int, rel string) error {
		return w.overlayDir(lfd, ufd, rel, true)
	})
}
