package mount

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// pageSize bounds the data string of mount(2): the kernel copies at most one
// page of it, so a longer overlay option string (many lower layers with long
// paths) would be cut off and the mount would fail or, worse, lose layers.
var pageSize = unix.Getpagesize()

// fsconfigMaxValue is the longest string fsconfig(2) accepts for one
// parameter, terminating NUL included (the kernel copies at most 256 bytes).
const fsconfigMaxValue = 256

// mountFS is mount(2), except that an overlay mount whose data does not fit
// in a page is made another way (see mountLongOverlay).
func mountFS(source, target, fstype string, flags uintptr, data string) error {
	if fstype == "overlay" && len(data) >= pageSize {
		return mountLongOverlay(source, target, flags, data)
	}
	return unix.Mount(source, target, fstype, flags, data)
}

// mountLongOverlay mounts an overlay whose options exceed a page. Where the
// kernel takes lower layers one at a time through the new mount API
// ("lowerdir+", Linux 6.8) it uses that, since it has no length limit on the
// whole; otherwise it shortens the option string by making the layer paths
// relative to their common parent directory.
func mountLongOverlay(source, target string, flags uintptr, data string) error {
	opts, err := parseOverlayData(data)
	if err != nil {
		return err
	}
	if err := opts.makeAbsolute(); err != nil {
		return err
	}
	if hasLowerdirPlus() && opts.fitsFsconfig() {
		err := mountOverlayFsconfig(source, target, flags, opts)
		if !errors.Is(err, errdefs.ErrNotImplemented) {
			return err
		}
	}
	return mountOverlayRelative(source, target, flags, opts)
}

// hasLowerdirPlus reports whether overlayfs here accepts the "lowerdir+"
// parameter of fsconfig(2); asked once by trying it.
var hasLowerdirPlus = sync.OnceValue(func() bool {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.FsconfigSetString(fd, "lowerdir+", "/") == nil
})

// overlayOption is one comma-separated word of overlay mount data.
type overlayOption struct {
	key, value string
	hasValue   bool
}

// overlayData is parsed overlay mount data: lower layers (nearest first) and
// every other option in order. Paths are unescaped.
type overlayData struct {
	lower   []string
	options []overlayOption
}

// pathKeys are the overlay options whose value is a single directory.
var pathKeys = map[string]bool{"upperdir": true, "workdir": true}

func parseOverlayData(data string) (overlayData, error) {
	var d overlayData
	for _, word := range splitEscaped(data, ',') {
		if word == "" {
			continue
		}
		key, value, hasValue := strings.Cut(word, "=")
		if key != "lowerdir" {
			if pathKeys[key] {
				value = unescape(value)
			}
			d.options = append(d.options, overlayOption{key, value, hasValue})
			continue
		}
		d.lower = d.lower[:0]
		for _, dir := range splitEscaped(value, ':') {
			if dir == "" {
				return d, fmt.Errorf("overlay lowerdir %q has an empty entry (data-only layers are not supported in long option strings): %w", value, errdefs.ErrInvalidArgument)
			}
			d.lower = append(d.lower, unescape(dir))
		}
	}
	if len(d.lower) == 0 {
		return d, fmt.Errorf("overlay options have no lowerdir: %w", errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// makeAbsolute resolves relative layer paths against the current directory,
// since the mount may run with another one.
func (d *overlayData) makeAbsolute() error {
	for i, dir := range d.lower {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("resolve overlay lowerdir %q: %w", dir, err)
		}
		d.lower[i] = abs
	}
	for i, o := range d.options {
		if !pathKeys[o.key] {
			continue
		}
		abs, err := filepath.Abs(o.value)
		if err != nil {
			return fmt.Errorf("resolve overlay %s %q: %w", o.key, o.value, err)
		}
		d.options[i].value = abs
	}
	return nil
}

// fitsFsconfig reports whether every value is short enough for fsconfig(2).
func (d overlayData) fitsFsconfig() bool {
	for _, dir := range d.lower {
		if len(dir) >= fsconfigMaxValue {
			return false
		}
	}
	for _, o := range d.options {
		if len(o.value) >= fsconfigMaxValue {
			return false
		}
	}
	return true
}

// mountAttrs maps mount(2) flags to fsmount(2) attributes.
var mountAttrs = []struct {
	flag uintptr
	attr int
}{
	{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
	{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
	{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
	{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	{unix.MS_NOATIME, unix.MOUNT_ATTR_NOATIME},
	{unix.MS_STRICTATIME, unix.MOUNT_ATTR_STRICTATIME},
	{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
	{unix.MS_RELATIME, unix.MOUNT_ATTR_RELATIME},
}

// superblockFlags maps mount(2) flags that belong to the filesystem rather
// than the mount to fsconfig flag names.
var superblockFlags = []struct {
	flag uintptr
	name string
}{
	{unix.MS_RDONLY, "ro"},
	{unix.MS_SYNCHRONOUS, "sync"},
	{unix.MS_DIRSYNC, "dirsync"},
	{unix.MS_LAZYTIME, "lazytime"},
}

// attrsFor converts flags for fsmount(2); flags it cannot express yield
// ErrNotImplemented so the caller falls back to mount(2).
func attrsFor(flags uintptr) (int, error) {
	attrs := 0
	known := uintptr(0)
	for _, m := range mountAttrs {
		known |= m.flag
		if flags&m.flag != 0 {
			attrs |= m.attr
		}
	}
	for _, s := range superblockFlags {
		known |= s.flag
	}
	if rest := flags &^ known; rest != 0 {
		return 0, fmt.Errorf("mount flags %#x have no fsmount equivalent: %w", rest, errdefs.ErrNotImplemented)
	}
	return attrs, nil
}

// mountOverlayFsconfig builds the overlay with fsopen/fsconfig/fsmount and
// attaches it with move_mount, passing each lower layer on its own.
func mountOverlayFsconfig(source, target string, flags uintptr, d overlayData) error {
	attrs, err := attrsFor(flags)
	if err != nil {
		return err
	}
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	if err := configureOverlay(fd, source, flags, d); err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fsError(fd, "create overlay", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fsError(fd, "fsmount overlay", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move overlay mount to %s: %w", target, err)
	}
	return nil
}

func configureOverlay(fd int, source string, flags uintptr, d overlayData) error {
	if err := unix.FsconfigSetString(fd, "source", source); err != nil {
		return fsError(fd, "set overlay source", err)
	}
	for _, dir := range d.lower {
		if err := unix.FsconfigSetString(fd, "lowerdir+", dir); err != nil {
			return fsError(fd, "add overlay lower layer "+dir, err)
		}
	}
	for _, o := range d.options {
		var err error
		if o.hasValue {
			err = unix.FsconfigSetString(fd, o.key, o.value)
		} else {
			err = unix.FsconfigSetFlag(fd, o.key)
		}
		if err != nil {
			return fsError(fd, "set overlay option "+o.key, err)
		}
	}
	for _, s := range superblockFlags {
		if flags&s.flag == 0 {
			continue
		}
		if err := unix.FsconfigSetFlag(fd, s.name); err != nil {
			return fsError(fd, "set overlay flag "+s.name, err)
		}
	}
	return nil
}

// fsError wraps err with the messages the kernel logged on the filesystem
// context, which say which parameter it refused and why.
func fsError(fd int, what string, err error) error {
	var msgs []string
	buf := make([]byte, 1024)
	for range 8 {
		n, rerr := unix.Read(fd, buf)
		if rerr != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s (%s): %w", what, strings.Join(msgs, "; "), err)
}

// mountOverlayRelative shortens the overlay data by making every layer path
// relative to the layers' common parent directory, then mounts from a thread
// whose working directory is that parent. The thread first unshares its
// filesystem context (CLONE_FS), so the chdir is invisible to every other
// thread of the process, and stays locked to its goroutine for good: Go
// destroys a thread whose goroutine exits locked, so no other goroutine ever
// runs with the changed directory.
func mountOverlayRelative(source, target string, flags uintptr, d overlayData) error {
	target, err := filepath.Abs(target)
	if err != nil {
		return fmt.Errorf("resolve mount target %q: %w", target, err)
	}
	dir := d.commonDir()
	data := d.relativeTo(dir)
	if len(data) >= pageSize {
		return fmt.Errorf("overlay options are %d bytes even with layer paths relative to %s, more than the %d-byte limit: %w",
			len(data), dir, pageSize-1, errdefs.ErrInvalidArgument)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- mountInDir(dir, source, target, flags, data)
	}()
	return <-errc
}

func mountInDir(dir, source, target string, flags uintptr, data string) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare filesystem context for overlay mount: %w", err)
	}
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("change to overlay layer directory %s: %w", dir, err)
	}
	return unix.Mount(source, target, "overlay", flags, data)
}

// paths lists every directory the overlay options name.
func (d overlayData) paths() []string {
	paths := append([]string(nil), d.lower...)
	for _, o := range d.options {
		if pathKeys[o.key] {
			paths = append(paths, o.value)
		}
	}
	return paths
}

// commonDir is the deepest directory containing every layer path.
func (d overlayData) commonDir() string {
	paths := d.paths()
	common := filepath.Dir(paths[0])
	for _, p := range paths[1:] {
		for !within(p, common) {
			common = filepath.Dir(common)
		}
	}
	return common
}

// within reports whether path lies strictly below dir.
func within(path, dir string) bool {
	if dir == "/" {
		return path != "/"
	}
	return strings.HasPrefix(path, dir+"/")
}

// relativeTo renders the data with layer paths relative to dir.
func (d overlayData) relativeTo(dir string) string {
	rel := func(p string) string {
		if dir == "/" {
			return escape(strings.TrimPrefix(p, "/"))
		}
		return escape(strings.TrimPrefix(p, dir+"/"))
	}
	lower := make([]string, len(d.lower))
	for i, p := range d.lower {
		lower[i] = rel(p)
	}
	words := []string{"lowerdir=" + strings.Join(lower, ":")}
	for _, o := range d.options {
		switch {
		case pathKeys[o.key]:
			words = append(words, o.key+"="+rel(o.value))
		case o.hasValue:
			words = append(words, o.key+"="+o.value)
		default:
			words = append(words, o.key)
		}
	}
	return strings.Join(words, ",")
}

// splitEscaped splits s at each sep not preceded by a backslash, leaving
// escapes in place.
func splitEscaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unescape drops the backslash of every backslash escape, as overlayfs does.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// escape protects the characters overlayfs treats as separators.
func escape(s string) string {
	if !strings.ContainsAny(s, `\:,`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`\:,`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// OverlayDirs returns the upper directory ("" for a read-only overlay) and
// the lower directories, nearest first, of an overlay mount, unescaped. ok
// is false for other mounts and for overlays it cannot describe that way:
// lower layers given one at a time (lowerdir+, datadir+) or an empty
// lowerdir entry.
func OverlayDirs(m Mount) (upper string, lower []string, ok bool) {
	if m.Type != "overlay" {
		return "", nil, false
	}
	d, err := parseOverlayData(strings.Join(m.Options, ","))
	if err != nil {
		return "", nil, false
	}
	for _, o := range d.options {
		switch o.key {
		case "upperdir":
			upper = o.value
		case "lowerdir+", "datadir+":
			return "", nil, false
		}
	}
	return upper, d.lower, true
}
