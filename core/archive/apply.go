package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// WhiteoutMode says how Apply realises whiteout entries.
type WhiteoutMode int

const (
	// WhiteoutRemove deletes what a whiteout hides from the directory being
	// applied onto, which holds the merged result of all earlier layers.
	WhiteoutRemove WhiteoutMode = iota
	// WhiteoutOverlay writes whiteouts as overlayfs expects them in an upper
	// (or lower) layer directory: ".wh.<name>" becomes a 0/0 character
	// device and ".wh..wh..opq" the xattr trusted.overlay.opaque=y on its
	// directory. Use it to apply a layer into an empty directory that will be
	// stacked with earlier layers by mount -t overlay.
	WhiteoutOverlay
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"

	overlayOpaqueXattr = "trusted.overlay.opaque"
	paxXattrPrefix     = "SCHILY.xattr."
)

// whiteoutLiteral, for UntarInto, creates ".wh.*" entries as the plain files
// they are outside a layer.
const whiteoutLiteral WhiteoutMode = -1

type applyOptions struct {
	umask     uint32
	whiteouts WhiteoutMode
	// prefix is a directory inside root that names are relative to, for
	// UntarInto; symlinks still resolve against root.
	prefix    string
	sameOwner bool
	logger    *slog.Logger
}

// ApplyOpt configures Apply.
type ApplyOpt func(*applyOptions)

// WithWhiteoutMode selects how whiteouts are applied (default WhiteoutRemove).
func WithWhiteoutMode(m WhiteoutMode) ApplyOpt {
	return func(o *applyOptions) { o.whiteouts = m }
}

// WithSameOwner says whether entries get the uid and gid the tar records. The
// default, like tar(1), is yes when running as root and no otherwise.
func WithSameOwner(same bool) ApplyOpt {
	return func(o *applyOptions) { o.sameOwner = same }
}

// WithLogger sets where skipped entries (device nodes that cannot be created,
// unsupported xattrs) are reported; default slog.Default().
func WithLogger(l *slog.Logger) ApplyOpt {
	return func(o *applyOptions) { o.logger = l }
}

// copyBufSize is the size of the pooled buffers file contents are copied
// through: large enough that big files move in few syscalls.
const copyBufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Apply extracts the uncompressed layer tar r onto the directory root and
// returns the number of bytes read from r. It reads r to its end, padding
// after the end-of-archive marker included, so a digester wrapped around r
// sees the whole stream.
//
// Every name is cleaned and resolved inside root (symlinks as if root were
// "/"); an entry that would reach outside is refused with an error naming it.
// On error the tree under root is partly applied: callers apply into a
// scratch snapshot and discard it on failure.
func Apply(ctx context.Context, root string, r io.Reader, opts ...ApplyOpt) (int64, error) {
	o := applyOptions{sameOwner: os.Geteuid() == 0, logger: slog.Default(), umask: currentUmask()}
	for _, opt := range opts {
		opt(&o)
	}
	cr := &countingReader{r: r}
	a, err := newApplier(ctx, root, o)
	if err != nil {
		return 0, err
	}
	defer a.close()
	// The tar reader reads headers 512 bytes at a time; the buffer turns that
	// into large reads of r, and reads of file bodies larger than it go
	// straight into the copy buffer.
	br := bufio.NewReaderSize(cr, 64<<10)
	if err := a.run(tar.NewReader(br)); err != nil {
		return cr.n, err
	}
	if _, err := io.CopyBuffer(io.Discard, br, a.buf); err != nil {
		return cr.n, fmt.Errorf("read layer tar trailer: %w", err)
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// applier holds the state of one Apply.
type applier struct {
	ctx  context.Context
	opts applyOptions
	root *root
	buf  []byte
	bufp *[]byte

	// added holds every path this layer created or replaced, plus their
	// ancestors, in the tar's namespace. Whiteouts only hide what earlier
	// layers made, never what this layer adds, whatever the entry order.
	added map[string]struct{}
	// dirs get their mode and times after all entries are in, since adding
	// an entry to a directory changes its mtime and a read-only mode would
	// stop later entries for an unprivileged caller.
	dirs []dirMeta

	euid, egid int
}

type dirMeta struct {
	rel          string
	ino          uint64
	mode         uint32
	atime, mtime unix.Timespec
}

func newApplier(ctx context.Context, path string, o applyOptions) (*applier, error) {
	r, err := openRoot(path)
	if err != nil {
		return nil, fmt.Errorf("apply layer: %w", err)
	}
	bp := bufPool.Get().(*[]byte)
	a := &applier{ctx: ctx, opts: o, root: r, buf: *bp, bufp: bp, euid: os.Geteuid(), egid: os.Getegid()}
	if o.whiteouts == WhiteoutRemove {
		a.added = make(map[string]struct{})
	}
	return a, nil
}

func (a *applier) close() {
	a.root.close()
	bufPool.Put(a.bufp)
}

func (a *applier) run(tr *tar.Reader) error {
	for {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			// Names are checked by cleanRel below, whatever GODEBUG says.
			return fmt.Errorf("read layer tar: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		if err := a.entry(hdr, tr); err != nil {
			return err
		}
	}
	return a.finishDirs()
}

// entry applies one tar member.
func (a *applier) entry(hdr *tar.Header, tr *tar.Reader) error {
	rel, err := cleanRel(hdr.Name)
	if err != nil {
		return fmt.Errorf("layer entry %q: %v: %w", hdr.Name, err, errdefs.ErrInvalidArgument)
	}
	if rel == "." && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("layer entry %q: the root can only be a directory: %w", hdr.Name, errdefs.ErrInvalidArgument)
	}
	rel = joinRel(a.opts.prefix, rel)
	if rel == "." {
		return a.rootDir(hdr)
	}
	dir, base := splitRel(rel)
	if a.opts.whiteouts != whiteoutLiteral && strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr, dir, base)
	}
	pfd, err := a.root.dir(dir, true, a.markAdded)
	if err != nil {
		return entryErr(hdr, "parent directory", err)
	}
	if err := a.create(pfd, base, rel, hdr, tr); err != nil {
		return err
	}
	a.markAdded(rel)
	return nil
}

func entryErr(hdr *tar.Header, what string, err error) error {
	switch {
	case errors.Is(err, unix.ENOTDIR):
		err = fmt.Errorf("%w (a component is not a directory): %w", err, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.ELOOP):
		err = fmt.Errorf("%w (symlink loop): %w", err, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.ENAMETOOLONG), errors.Is(err, unix.EXDEV):
		err = fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("layer entry %q: %s: %w", hdr.Name, what, err)
}

// markAdded records rel and its ancestors as made by this layer.
func (a *applier) markAdded(rel string) {
	if a.added == nil {
		return
	}
	for {
		if _, ok := a.added[rel]; ok {
			return
		}
		a.added[rel] = struct{}{}
		i := strings.LastIndexByte(rel, '/')
		if i < 0 {
			return
		}
		rel = rel[:i]
	}
}

func (a *applier) isAdded(rel string) bool {
	_, ok := a.added[rel]
	return ok
}

func (a *applier) create(pfd int, base, rel string, hdr *tar.Header, tr *tar.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse: // the reader reports old TypeRegA as TypeReg
		return a.regular(pfd, base, hdr, tr)
	case tar.TypeDir:
		return a.directory(pfd, base, rel, hdr)
	case tar.TypeSymlink:
		return a.symlink(pfd, base, hdr)
	case tar.TypeLink:
		return a.hardlink(pfd, base, rel, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return a.special(pfd, base, hdr)
	case tar.TypeXGlobalHeader:
		return nil
	}
	return fmt.Errorf("layer entry %q: tar type %q: %w", hdr.Name, hdr.Typeflag, errdefs.ErrNotImplemented)
}

// replaceable makes room for a new entry at base: an existing directory is
// kept when keepDir (and reported by returning true), anything else is
// removed.
func (a *applier) replaceable(pfd int, base string, keepDir bool) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, err
	}
	if keepDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return true, nil
	}
	// pfd is the cached parent; removing its child leaves it valid.
	return false, removeAllAt(pfd, base)
}

func (a *applier) regular(pfd int, base string, hdr *tar.Header, tr *tar.Reader) error {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// Created with its final permission bits: the umask is the only thing
	// that can take bits away, and then fchmod below puts them back.
	perm := tarMode(hdr) & 0o777
	fd, err := unix.Openat(pfd, base, flags, perm)
	if err == unix.EEXIST {
		if _, err = a.replaceable(pfd, base, false); err == nil {
			fd, err = unix.Openat(pfd, base, flags, perm)
		}
	}
	if err != nil {
		return entryErr(hdr, "create file", err)
	}
	defer unix.Close(fd)
	if hdr.Size > 0 {
		if err := copyToFd(fd, tr, a.buf); err != nil {
			return entryErr(hdr, "write file", err)
		}
	}
	if a.opts.sameOwner && !a.ownedAsCreated(pfd, hdr) {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return entryErr(hdr, "chown", err)
		}
	}
	// Xattrs after chown (chown drops security.capability), mode after both
	// (chown clears setuid and setgid).
	if hasXattrs(hdr) {
		if err := a.xattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
			return err
		}
	}
	if mode := tarMode(hdr); mode&^0o777 != 0 || mode&a.opts.umask != 0 {
		if err := unix.Fchmod(fd, mode); err != nil {
			return entryErr(hdr, "chmod", err)
		}
	}
	return a.times(pfd, base, hdr)
}

// copyToFd copies r to fd through buf. It writes with write(2) directly:
// os.File's ReadFrom would ignore buf and allocate its own small one.
func copyToFd(fd int, r io.Reader, buf []byte) error {
	for {
		n, rerr := r.Read(buf)
		for b := buf[:n]; len(b) > 0; {
			w, err := unix.Write(fd, b)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			b = b[w:]
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// ownedAsCreated reports whether a file just created in directory pfd
// already has the entry's owner, so that chown would change nothing: the
// creator's uid, and its gid or, in a setgid directory, the directory's.
func (a *applier) ownedAsCreated(pfd int, hdr *tar.Header) bool {
	if hdr.Uid != a.euid {
		return false
	}
	st, err := a.root.dirStat(pfd)
	if err != nil {
		return false
	}
	gid := a.egid
	if st.Mode&unix.S_ISGID != 0 {
		gid = int(st.Gid)
	}
	return hdr.Gid == gid
}

// currentUmask reads the process umask without changing it (umask(2) would
// briefly affect every thread).
func currentUmask() uint32 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o777 // unknown: always chmod
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 0o777
}

func tarMode(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & 0o7777
}

func (a *applier) directory(pfd int, base, rel string, hdr *tar.Header) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if err == unix.EEXIST {
		var kept bool
		if kept, err = a.replaceable(pfd, base, true); err == nil && !kept {
			err = unix.Mkdirat(pfd, base, 0o700)
		} else if kept {
			err = a.dropStaleXattrs(pfd, base, hdr)
		}
	}
	if err != nil {
		return entryErr(hdr, "create directory", err)
	}
	return a.dirMeta(pfd, base, rel, hdr)
}

// rootDir applies the metadata of an entry naming root itself ("./").
func (a *applier) rootDir(hdr *tar.Header) error {
	return a.dirMeta(a.root.fd, ".", ".", hdr)
}

func (a *applier) dirMeta(pfd int, base, rel string, hdr *tar.Header) error {
	if err := a.owner(pfd, base, hdr); err != nil {
		return err
	}
	a.root.forgetStat() // base may be the cached directory (root's "./")
	if err := a.lxattrs(pfd, base, hdr); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return entryErr(hdr, "stat directory", err)
	}
	atime, mtime := tarTimes(hdr)
	a.dirs = append(a.dirs, dirMeta{rel: rel, ino: st.Ino, mode: tarMode(hdr), atime: atime, mtime: mtime})
	return nil
}

// finishDirs sets the mode and times of every directory entry, now that
// nothing more is added to them. A directory that a later entry replaced is
// recognised by its inode number and left alone.
func (a *applier) finishDirs() error {
	for _, d := range a.dirs {
		dir, base := splitRel(d.rel)
		pfd := a.root.fd
		if d.rel != "." {
			var err error
			if pfd, err = a.root.dir(dir, false, nil); err != nil {
				continue
			}
		}
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
			st.Ino != d.ino || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if err := chmodAt(pfd, base, d.mode); err != nil {
			return fmt.Errorf("layer directory %q: chmod: %w", d.rel, err)
		}
		ts := []unix.Timespec{d.atime, d.mtime}
		if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("layer directory %q: set times: %w", d.rel, err)
		}
	}
	a.dirs = nil
	return nil
}

func (a *applier) symlink(pfd int, base string, hdr *tar.Header) error {
	err := unix.Symlinkat(hdr.Linkname, pfd, base)
	if err == unix.EEXIST {
		if _, err = a.replaceable(pfd, base, false); err == nil {
			err = unix.Symlinkat(hdr.Linkname, pfd, base)
		}
	}
	if err != nil {
		return entryErr(hdr, "create symlink", err)
	}
	if err := a.owner(pfd, base, hdr); err != nil {
		return err
	}
	if err := a.lxattrs(pfd, base, hdr); err != nil {
		return err
	}
	return a.times(pfd, base, hdr)
}

// hardlink links base to the entry's target, an earlier path of the layer.
// The target is resolved inside root like any name; linkat does not follow a
// symlink target, so the link is to the symlink itself, as tar means.
func (a *applier) hardlink(pfd int, base, rel string, hdr *tar.Header) error {
	target, err := cleanRel(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("layer entry %q: link target: %v: %w", hdr.Name, err, errdefs.ErrInvalidArgument)
	}
	if target == "." {
		return fmt.Errorf("layer entry %q: link target is the root: %w", hdr.Name, errdefs.ErrInvalidArgument)
	}
	target = joinRel(a.opts.prefix, target)
	if target == rel {
		return nil
	}
	tdir, tbase := splitRel(target)
	tfd, err := a.root.open(tdir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return entryErr(hdr, fmt.Sprintf("link target %q", hdr.Linkname), err)
	}
	defer unix.Close(tfd)
	err = unix.Linkat(tfd, tbase, pfd, base, 0)
	if err == unix.EEXIST {
		if same, serr := sameInode(tfd, tbase, pfd, base); serr == nil && same {
			return nil
		}
		if _, err = a.replaceable(pfd, base, false); err == nil {
			err = unix.Linkat(tfd, tbase, pfd, base, 0)
		}
	}
	if err != nil {
		return entryErr(hdr, fmt.Sprintf("link to %q", hdr.Linkname), err)
	}
	return nil
}

func sameInode(afd int, a string, bfd int, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Fstatat(afd, a, &sa, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, err
	}
	if err := unix.Fstatat(bfd, b, &sb, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}

// special creates a character or block device or a FIFO. Devices that the
// caller may not create (no CAP_MKNOD, a user namespace) are skipped with a
// logged reason rather than failing the layer, as container images carry
// /dev entries that the runtime replaces anyway.
func (a *applier) special(pfd int, base string, hdr *tar.Header) error {
	mode := tarMode(hdr)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	err := unix.Mknodat(pfd, base, mode, dev)
	if err == unix.EEXIST {
		if _, err = a.replaceable(pfd, base, false); err == nil {
			err = unix.Mknodat(pfd, base, mode, dev)
		}
	}
	if (err == unix.EPERM || err == unix.EACCES) && hdr.Typeflag != tar.TypeFifo {
		a.opts.logger.WarnContext(a.ctx, "skipping device node in layer", "entry", hdr.Name, "reason", err)
		return nil
	}
	if err != nil {
		return entryErr(hdr, "mknod", err)
	}
	if err := a.owner(pfd, base, hdr); err != nil {
		return err
	}
	if err := a.lxattrs(pfd, base, hdr); err != nil {
		return err
	}
	if err := chmodAt(pfd, base, tarMode(hdr)); err != nil {
		return entryErr(hdr, "chmod", err)
	}
	return a.times(pfd, base, hdr)
}

// chmodAt sets the mode of base, an entry that is not a symlink, without
// following it should it have become one (fchmodat2, Linux 6.6); older
// kernels lack the flag and get plain fchmodat.
func chmodAt(pfd int, base string, mode uint32) error {
	err := unix.Fchmodat(pfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.EOPNOTSUPP || err == unix.ENOSYS {
		err = unix.Fchmodat(pfd, base, mode, 0)
	}
	return err
}

func (a *applier) owner(pfd int, base string, hdr *tar.Header) error {
	if !a.opts.sameOwner {
		return nil
	}
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return entryErr(hdr, "chown", err)
	}
	return nil
}

func (a *applier) lxattrs(pfd int, base string, hdr *tar.Header) error {
	if !hasXattrs(hdr) {
		return nil
	}
	p := procPath(pfd, base)
	return a.xattrs(hdr, func(k string, v []byte) error { return unix.Lsetxattr(p, k, v, 0) })
}

// dropStaleXattrs removes from an existing directory the xattrs its new entry
// does not list: the entry describes the directory completely, and a diff
// records a removed xattr only by its absence. overlayfs's own and the
// host's SELinux label are kept.
func (a *applier) dropStaleXattrs(pfd int, base string, hdr *tar.Header) error {
	p := procPath(pfd, base)
	attrs, err := listXattrs(p)
	if err != nil {
		return err
	}
	for k := range attrs {
		if _, ok := hdr.PAXRecords[paxXattrPrefix+k]; ok || overlayXattr(k) || k == "security.selinux" {
			continue
		}
		if err := unix.Lremovexattr(p, k); err != nil && err != unix.ENODATA {
			return fmt.Errorf("remove xattr %q: %w", k, err)
		}
	}
	return nil
}

func hasXattrs(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattrPrefix) {
			return true
		}
	}
	return false
}

// xattrs sets the entry's SCHILY.xattr.* records with set. overlayfs's own
// attributes are dropped; attributes the filesystem does not support are
// skipped with a log line.
func (a *applier) xattrs(hdr *tar.Header, set func(string, []byte) error) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok {
			continue
		}
		if overlayXattr(name) {
			a.opts.logger.WarnContext(a.ctx, "dropping overlayfs xattr from layer entry", "entry", hdr.Name, "xattr", name)
			continue
		}
		err := set(name, []byte(v))
		if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
			a.opts.logger.WarnContext(a.ctx, "skipping unsupported xattr", "entry", hdr.Name, "xattr", name)
			continue
		}
		if err != nil {
			return entryErr(hdr, fmt.Sprintf("set xattr %q", name), err)
		}
	}
	return nil
}

func tarTimes(hdr *tar.Header) (atime, mtime unix.Timespec) {
	mtime = timespec(hdr.ModTime)
	atime = mtime
	if !hdr.AccessTime.IsZero() {
		atime = timespec(hdr.AccessTime)
	}
	return atime, mtime
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func (a *applier) times(pfd int, base string, hdr *tar.Header) error {
	atime, mtime := tarTimes(hdr)
	if err := unix.UtimesNanoAt(pfd, base, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return entryErr(hdr, "set times", err)
	}
	return nil
}
