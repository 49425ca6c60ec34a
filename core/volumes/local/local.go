// Package local is berth's built-in volume driver: each volume is a
// directory, <root>/<namespace>/<name>/_data. Like Docker's local driver it
// can instead mount a filesystem there while containers use the volume:
//
//	type=tmpfs,device=tmpfs,o=size=64m       a tmpfs (data lives while mounted)
//	type=none,o=bind,device=/host/path       a bind of an existing host directory
//	type=<fs>,device=<dev>,o=<options>       any other filesystem
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/mountspec"
	"github.com/berthd/berth/core/volumes"
	"github.com/berthd/berth/snapshotters/storage"
)

// trashPrefix names volume directories being deleted. Volume names start
// with a letter or digit, so no volume can be named like this.
const trashPrefix = ".trash-"

// Driver keeps volumes under root.
type Driver struct {
	root string
}

// New returns the driver over root (created 0700: volumes hold users' data)
// and finishes deletions a crash interrupted.
func New(root string) (*Driver, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create volumes root: %w", err)
	}
	d := &Driver{root: root}
	d.sweepTrash()
	return d, nil
}

// Root is the folder the driver keeps volumes in.
func (d *Driver) Root() string { return d.root }

func (d *Driver) dir(v volumes.Volume) string  { return filepath.Join(d.root, v.Namespace, v.Name) }
func (d *Driver) data(v volumes.Volume) string { return filepath.Join(d.dir(v), "_data") }

// Create checks the options and makes the volume's directories.
func (d *Driver) Create(ctx context.Context, v volumes.Volume) (string, error) {
	o, err := parseOptions(v.Options)
	if err != nil {
		return "", err
	}
	if err := o.check(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(d.root, v.Namespace), 0o700); err != nil {
		return "", err
	}
	if err := os.Mkdir(d.dir(v), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if err := mkdirData(d.data(v)); err != nil {
		return "", err
	}
	return d.data(v), nil
}

// mkdirData makes a volume's _data directory 0755 (what a new, empty
// volume looks like in a container), whatever the umask.
func mkdirData(path string) error {
	if err := os.Mkdir(path, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	}
	return os.Chmod(path, 0o755)
}

// Mount makes the data available: for a plain volume its directory
// (recreated if a crash lost it), otherwise the filesystem its options
// name, mounted unless it already is.
func (d *Driver) Mount(ctx context.Context, v volumes.Volume) (string, error) {
	o, err := parseOptions(v.Options)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(d.dir(v), 0o700); err != nil {
		return "", err
	}
	data := d.data(v)
	if err := mkdirData(data); err != nil {
		return "", err
	}
	if o.Type == "" {
		return data, nil
	}
	mounted, err := mountinfo.Mounted(data)
	if err != nil {
		return "", err
	}
	if mounted {
		return data, nil
	}
	return data, o.mount(data)
}

// Unmount unmounts what Mount mounted.
func (d *Driver) Unmount(ctx context.Context, v volumes.Volume) error {
	o, err := parseOptions(v.Options)
	if err != nil || o.Type == "" {
		return err
	}
	return mount.UnmountAll(d.data(v), 0)
}

// Remove unmounts the volume, moves its directory aside and deletes it.
// Nothing is deleted while anything is still mounted under it, so a bind
// volume never takes the host directory's files with it. A crash between
// the move and the end of the deletion leaves a trash directory that New
// removes.
func (d *Driver) Remove(ctx context.Context, v volumes.Volume) error {
	dir := d.dir(v)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	trash := filepath.Join(d.root, v.Namespace, trashPrefix+v.Name+"-"+volumes.NewName()[:8])
	if err := unmountUnder(dir); err != nil {
		return err
	}
	if err := os.Rename(dir, trash); err != nil {
		return fmt.Errorf("move volume data aside: %w", err)
	}
	return removeTree(trash)
}

// unmountUnder unmounts everything under dir and checks nothing is left.
func unmountUnder(dir string) error {
	if err := mount.UnmountRecursive(dir, 0); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	left, err := mount.MountedUnder(dir)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("still mounted: %s: %w", strings.Join(left, ", "), errdefs.ErrFailedPrecondition)
	}
	return nil
}

func removeTree(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete volume data: %w", err)
	}
	return nil
}

// sweepTrash deletes what interrupted removals left.
func (d *Driver) sweepTrash() {
	nss, _ := os.ReadDir(d.root)
	for _, ns := range nss {
		entries, _ := os.ReadDir(filepath.Join(d.root, ns.Name()))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), trashPrefix) {
				path := filepath.Join(d.root, ns.Name(), e.Name())
				if err := removeTree(path); err != nil {
					slog.Warn("delete leftover of a removed volume", "path", path, "error", err)
				}
			}
		}
	}
}

// Size measures a plain volume's tree, or what a mounted filesystem uses;
// a bind of a host directory is not the volume's own data (-1).
func (d *Driver) Size(ctx context.Context, v volumes.Volume) (int64, error) {
	o, err := parseOptions(v.Options)
	if err != nil {
		return -1, err
	}
	data := d.data(v)
	switch {
	case o.bind():
		return -1, nil
	case o.Type != "":
		mounted, err := mountinfo.Mounted(data)
		if err != nil || !mounted {
			return 0, err
		}
		var st unix.Statfs_t
		if err := unix.Statfs(data, &st); err != nil {
			return -1, err
		}
		return int64(st.Blocks-st.Bfree) * st.Bsize, nil
	}
	u, err := storage.DiskUsage(ctx, data)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return u.Size, err
}

// options are the local driver's volume options.
type options struct {
	Type   string   // filesystem type; "" for a plain directory
	Device string   // what to mount
	Opts   []string // mount options (o=, comma-separated)
}

// parseOptions reads the driver options of a volume.
func parseOptions(m map[string]string) (options, error) {
	var o options
	for k, v := range m {
		switch k {
		case "type":
			o.Type = v
		case "device":
			o.Device = v
		case "o":
			if v != "" {
				o.Opts = strings.Split(v, ",")
			}
		default:
			return options{}, fmt.Errorf("volume option %q is not known to the local driver (type, device, o): %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return o, nil
}

func (o options) bind() bool {
	return slices.Contains(o.Opts, "bind") || slices.Contains(o.Opts, "rbind")
}

// check validates options when a volume is created, so a bad one fails
// then rather than when a container starts.
func (o options) check() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("volume options: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	switch {
	case o.Type == "" && (o.Device != "" || len(o.Opts) > 0):
		return invalid("device and o need a type (type=tmpfs, or type=none with o=bind)")
	case o.Type == "":
		return nil
	case o.Device == "":
		return invalid("type=%s needs a device", o.Type)
	case o.Type == "tmpfs":
		_, _, err := mountspec.ParseTmpfsOptions(o.Opts)
		return err
	case o.Type == "none" || o.Type == "bind":
		if !o.bind() {
			return invalid("type=%s needs o=bind (or rbind)", o.Type)
		}
		src, err := mountspec.ResolveBindSource(o.Device)
		if err != nil {
			return fmt.Errorf("volume option device: %w", err)
		}
		if !src.Dir {
			return invalid("device %s is not a directory", o.Device)
		}
	case o.bind():
		return invalid("o=bind goes with type=none, not type=%s", o.Type)
	}
	return nil
}

// mount mounts the volume's filesystem at data. A bind's source is
// resolved and pinned by descriptor first, so a symlink swapped into the
// host path cannot redirect it.
func (o options) mount(data string) error {
	if !o.bind() {
		m := mount.Mount{Type: o.Type, Source: o.Device, Options: o.Opts}
		if o.Type == "tmpfs" {
			opts, ro, err := mountspec.ParseTmpfsOptions(o.Opts)
			if err != nil {
				return err
			}
			if ro {
				opts = append(opts, "ro")
			}
			m.Options = opts
		}
		return m.Mount(data)
	}
	src, err := mountspec.ResolveBindSource(o.Device)
	if err != nil {
		return err
	}
	f, err := mountspec.OpenBindSource(src.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	pinned := "/proc/self/fd/" + fmt.Sprint(f.Fd())
	return mount.Mount{Type: "none", Source: pinned, Options: o.Opts}.Mount(data)
}
