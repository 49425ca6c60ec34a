package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// Change is one difference reported by Changes and OverlayChanges.
type Change struct {
	Kind ChangeKind
	// Path is absolute within the tree: "/etc/passwd".
	Path string
}

// DiffOpt configures WriteDiff and WriteOverlayDiff.
type DiffOpt func(*diffOptions)

type diffOptions struct {
	logger *slog.Logger
}

// WithDiffLogger sets where skipped entries (sockets) are reported.
func WithDiffLogger(l *slog.Logger) DiffOpt {
	return func(o *diffOptions) { o.logger = l }
}

func diffOpts(opts []DiffOpt) diffOptions {
	o := diffOptions{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WriteDiff writes to w an OCI layer tar that turns tree lower into tree upper
// when applied: added and changed entries in full, deleted ones as
// ".wh.<name>" whiteouts, the directories above each change too. Both trees
// are plain directories or mounted views; lower "" (or an empty directory)
// makes the layer a whole-filesystem export.
//
// The output is deterministic: entries in depth-first order with each
// directory's names sorted, PAX format, uid/gid numeric without names,
// mtimes in whole seconds (as docker and containerd write them, which keeps
// entries to a single 512-byte header), and a file seen again by inode
// written as a hard link to its first path.
func WriteDiff(ctx context.Context, w io.Writer, lower, upper string, opts ...DiffOpt) error {
	lw := newLayerWriter(ctx, w, diffOpts(opts))
	if err := compareRoots(ctx, lower, upper, lw.change); err != nil {
		return err
	}
	return lw.close()
}

// WriteOverlayDiff writes the layer tar of an overlayfs upper directory
// without looking at the lower layers: every entry of upperdir is written,
// 0/0 character devices as ".wh.<name>", directories marked opaque as their
// entry plus ".wh..wh..opq", and overlayfs's own trusted.overlay.* xattrs
// never. Upper directories made with redirect_dir or metacopy are refused
// (errdefs.ErrNotImplemented), since their content lives in lower layers.
func WriteOverlayDiff(ctx context.Context, w io.Writer, upperdir string, opts ...DiffOpt) error {
	lw := newLayerWriter(ctx, w, diffOpts(opts))
	ufd, err := openTree(upperdir)
	if err != nil {
		return err
	}
	defer unix.Close(ufd)
	if err := newWalker(ctx, lw.change).overlayDir(-1, ufd, ".", false); err != nil {
		return err
	}
	return lw.close()
}

// Changes calls fn for every difference between trees lower and upper, in
// depth-first order with sorted names. Directories above a change are
// reported as modified (before it), as docker diff does. Lower "" means an
// empty tree.
func Changes(ctx context.Context, lower, upper string, fn func(Change) error) error {
	return compareRoots(ctx, lower, upper, changeFunc(fn))
}

// OverlayChanges is Changes for an overlayfs upper directory: only upperdir
// is walked, and lower (the merged view of the layers below, "" for none) is
// consulted to tell additions from modifications and to compare opaque
// directories in full.
func OverlayChanges(ctx context.Context, upperdir, lower string, fn func(Change) error) error {
	ufd, err := openTree(upperdir)
	if err != nil {
		return err
	}
	defer unix.Close(ufd)
	lfd := -1
	if lower != "" {
		if lfd, err = openTree(lower); err != nil {
			return err
		}
		defer unix.Close(lfd)
	}
	return newWalker(ctx, changeFunc(fn)).overlayDir(lfd, ufd, ".", true)
}

func changeFunc(fn func(Change) error) func(ChangeKind, *node) error {
	return func(k ChangeKind, n *node) error {
		return fn(Change{Kind: k, Path: "/" + n.rel})
	}
}

func compareRoots(ctx context.Context, lower, upper string, fn func(ChangeKind, *node) error) error {
	ufd, err := openTree(upper)
	if err != nil {
		return err
	}
	defer unix.Close(ufd)
	lfd := -1
	if lower != "" {
		if lfd, err = openTree(lower); err != nil {
			return err
		}
		defer unix.Close(lfd)
	}
	return newWalker(ctx, fn).compareDir(lfd, ufd, ".")
}

func openTree(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open tree %q: %w", path, err)
	}
	return fd, nil
}

type devIno struct{ dev, ino uint64 }

// layerWriter turns walk events into tar entries.
type layerWriter struct {
	ctx   context.Context
	tw    *tar.Writer
	opts  diffOptions
	buf   []byte
	bufp  *[]byte
	links map[devIno]string
}

func newLayerWriter(ctx context.Context, w io.Writer, o diffOptions) *layerWriter {
	bp := bufPool.Get().(*[]byte)
	return &layerWriter{ctx: ctx, tw: tar.NewWriter(w), opts: o, buf: *bp, bufp: bp, links: map[devIno]string{}}
}

func (lw *layerWriter) close() error {
	bufPool.Put(lw.bufp)
	if err := lw.tw.Close(); err != nil {
		return fmt.Errorf("finish layer tar: %w", err)
	}
	return nil
}

func (lw *layerWriter) change(kind ChangeKind, n *node) error {
	if kind == ChangeDelete {
		dir, base := splitRel(n.rel)
		return lw.marker(joinRel(dir, whiteoutPrefix+base), &n.st)
	}
	hdr, err := lw.header(n)
	if err != nil || hdr == nil {
		return err
	}
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar header %q: %w", n.rel, err)
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		if err := lw.content(n, hdr.Size); err != nil {
			return err
		}
	}
	if n.opaque {
		return lw.marker(joinRel(n.rel, whiteoutOpaque), &n.st)
	}
	return nil
}

// marker writes an empty whiteout entry, dated like the entry it stands for.
func (lw *layerWriter) marker(name string, st *unix.Stat_t) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, ModTime: time.Unix(st.Mtim.Sec, 0), Format: tar.FormatPAX}
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write whiteout %q: %w", name, err)
	}
	return nil
}

// header builds the tar header of n; nil for what tar cannot hold (sockets).
func (lw *layerWriter) header(n *node) (*tar.Header, error) {
	st := &n.st
	hdr := &tar.Header{
		Name:    n.rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		if st.Nlink > 1 {
			key := devIno{uint64(st.Dev), st.Ino}
			if first, ok := lw.links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				lw.links[key] = n.rel
			}
		}
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		target, err := readlinkAt(n.pfd, n.name)
		if err != nil {
			return nil, err
		}
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		lw.opts.logger.DebugContext(lw.ctx, "skipping socket in layer diff", "path", n.rel)
		return nil, nil
	}
	attrs, err := nodeXattrs(n)
	if err != nil {
		return nil, err
	}
	for k, v := range attrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string, len(attrs))
		}
		hdr.PAXRecords[paxXattrPrefix+k] = v
	}
	return hdr, nil
}

// content copies exactly size bytes of n's file into the tar.
func (lw *layerWriter) content(n *node, size int64) error {
	fd, err := openFileAt(n.pfd, n.name)
	if err != nil {
		return fmt.Errorf("open %q: %w", n.rel, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != n.st.Ino {
		return fmt.Errorf("file %q was replaced while being read", n.rel)
	}
	// LimitReader also hides fdReader from io.CopyBuffer's WriterTo
	// check; the pooled buffer is used.
	written, err := io.CopyBuffer(lw.tw, io.LimitReader(fdReader(fd), size), lw.buf)
	if err != nil {
		return fmt.Errorf("copy %q into layer: %w", n.rel, err)
	}
	if written != size {
		return fmt.Errorf("file %q shrank from %d to %d bytes while being read", n.rel, size, written)
	}
	return nil
}
