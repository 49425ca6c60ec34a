// Package mount describes filesystem mounts as snapshotters hand them out and
// applies them to the host.
package mount

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mount is one filesystem mount: the same shape as the containerd API's
// types.Mount, so it converts one-to-one at the service boundary.
type Mount struct {
	// Type is the filesystem type ("overlay", "bind", "tmpfs", ...).
	Type string
	// Source is the device, directory or pseudo name.
	Source string
	// Target is a subdirectory of the mount point to mount at; usually empty.
	Target string
	// Options are fstab-style options ("ro", "rbind", "lowerdir=...").
	Options []string
}

// ReadOnly reports whether the mount carries the "ro" option.
func (m Mount) ReadOnly() bool {
	for _, o := range m.Options {
		if o == "ro" {
			return true
		}
	}
	return false
}

// flagOptions maps fstab option words to mount(2) flags; a true clear bit
// means the word removes the flag instead of setting it.
var flagOptions = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro":          {false, unix.MS_RDONLY},
	"rw":          {true, unix.MS_RDONLY},
	"bind":        {false, unix.MS_BIND},
	"rbind":       {false, unix.MS_BIND | unix.MS_REC},
	"nosuid":      {false, unix.MS_NOSUID},
	"suid":        {true, unix.MS_NOSUID},
	"nodev":       {false, unix.MS_NODEV},
	"dev":         {true, unix.MS_NODEV},
	"noexec":      {false, unix.MS_NOEXEC},
	"exec":        {true, unix.MS_NOEXEC},
	"noatime":     {false, unix.MS_NOATIME},
	"relatime":    {false, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME},
	"nodiratime":  {false, unix.MS_NODIRATIME},
	"sync":        {false, unix.MS_SYNCHRONOUS},
	"remount":     {false, unix.MS_REMOUNT},
	"private":     {false, unix.MS_PRIVATE},
	"rprivate":    {false, unix.MS_PRIVATE | unix.MS_REC},
	"slave":       {false, unix.MS_SLAVE},
	"rslave":      {false, unix.MS_SLAVE | unix.MS_REC},
	"shared":      {false, unix.MS_SHARED},
	"rshared":     {false, unix.MS_SHARED | unix.MS_REC},
	"defaults":    {false, 0},
}

// ParseOptions splits fstab-style options into mount(2) flags and the data
// string handed to the filesystem.
func ParseOptions(options []string) (flags uintptr, data string) {
	var rest []string
	for _, o := range options {
		if f, ok := flagOptions[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		rest = append(rest, o)
	}
	return flags, strings.Join(rest, ",")
}

// Mount mounts m on target. Bind mounts that ask for read-only are remounted,
// because the kernel ignores MS_RDONLY on the first bind call.
func (m Mount) Mount(target string) error {
	if m.Target != "" {
		target = target + "/" + strings.TrimPrefix(m.Target, "/")
	}
	flags, data := ParseOptions(m.Options)
	const propagation = unix.MS_SHARED | unix.MS_PRIVATE | unix.MS_SLAVE | unix.MS_UNBINDABLE
	if flags&unix.MS_REMOUNT == 0 || data != "" {
		if err := mountFS(m.Source, target, m.Type, flags&^propagation, data); err != nil {
			return fmt.Errorf("mount %s (%s, options %q) on %s: %w", m.Source, m.Type, shorten(strings.Join(m.Options, ",")), target, err)
		}
	}
	if flags&propagation != 0 {
		if err := unix.Mount("", target, "", flags&(propagation|unix.MS_REC), ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", target, err)
		}
	}
	if flags&unix.MS_BIND != 0 && flags&unix.MS_RDONLY != 0 {
		remount := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
		if err := unix.Mount("", target, "", remount|flags&unix.MS_REC, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", target, err)
		}
	}
	return nil
}

// shorten keeps error messages readable when options list many layers.
func shorten(s string) string {
	const max = 512
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:max], len(s))
}

// All mounts each of mounts on target in order.
func All(mounts []Mount, target string) error {
	for _, m := range mounts {
		if err := m.Mount(target); err != nil {
			return err
		}
	}
	return nil
}

// Unmount unmounts target, retrying while the kernel reports it busy, and
// treats "not mounted" as success so cleanup paths can call it freely.
func Unmount(target string, flags int) error {
	for i := 0; ; i++ {
		err := unix.Unmount(target, flags)
		switch {
		case err == nil || err == unix.EINVAL || os.IsNotExist(err):
			return nil
		case err == unix.EBUSY && i < 50:
			time.Sleep(10 * time.Millisecond)
		default:
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
}

// UnmountAll unmounts every mount stacked on target.
func UnmountAll(target string, flags int) error {
	for {
		err := unix.Unmount(target, flags)
		if err == unix.EINVAL || os.IsNotExist(err) {
			return nil
		}
		if err == unix.EBUSY {
			if err := Unmount(target, flags); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
}

// WithTempMount mounts mounts on a fresh temporary directory, calls f with
// it, then unmounts and removes the directory whatever f returns.
func WithTempMount(mounts []Mount, f func(root string) error) (err error) {
	dir, err := os.MkdirTemp("", "berth-mount-")
	if err != nil {
		return fmt.Errorf("create temporary mount point: %w", err)
	}
	defer func() {
		if uerr := UnmountAll(dir, 0); uerr != nil && err == nil {
			err = uerr
		}
		if rerr := os.Remove(dir); rerr != nil && err == nil {
			err = fmt.Errorf("remove temporary mount point: %w", rerr)
		}
	}()
	if err := All(mounts, dir); err != nil {
		return err
	}
	return f(dir)
}
