package oci

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// WithPrivileged gives the container what docker --privileged does: every
// capability this process holds, every host device (nodes created from
// the host's /dev, all allowed in the device cgroup), nothing masked or
// read-only under /proc and /sys, writable sysfs and cgroup mounts, and no
// seccomp filter.
func WithPrivileged() SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		setCapabilities(s, CurrentCapabilities())
		devices, err := HostDevices()
		if err != nil {
			return err
		}
		l := ensureLinux(s)
		l.Devices = devices
		ensureResources(s).Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		l.MaskedPaths = nil
		l.ReadonlyPaths = nil
		l.Seccomp = nil
		for i := range s.Mounts {
			if s.Mounts[i].Type == "sysfs" || s.Mounts[i].Type == "cgroup" || s.Mounts[i].Type == "cgroup2" {
				clearReadonly(&s.Mounts[i])
			}
		}
		return nil
	}
}

// hostDevSkip are /dev entries a privileged container does not get from
// the host: its own pts, shm and mqueue mounts replace them, and the
// console is the container's own.
var hostDevSkip = map[string]bool{
	"pts": true, "shm": true, "fd": true, "mqueue": true,
	".lxc": true, ".lxd-mounts": true, ".udev": true, "console": true,
}

// HostDevices lists the host's device nodes under /dev as spec devices.
func HostDevices() ([]specs.LinuxDevice, error) {
	return devicesUnder("/dev")
}

func devicesUnder(root string) ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// A node can vanish while walking (hotplug); skip it.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if p != root && hostDevSkip[d.Name()] && strings.Count(strings.TrimPrefix(p, root), "/") == 1 {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&(fs.ModeDevice) == 0 {
			return nil
		}
		dev, ok := deviceAt(p)
		if ok {
			out = append(out, dev)
		}
		return nil
	})
	return out, err
}

// deviceAt describes the device node at p; ok is false if it is gone or
// not a device.
func deviceAt(p string) (specs.LinuxDevice, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return specs.LinuxDevice{}, false
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, false
	}
	mode := os.FileMode(st.Mode & 0o7777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path:     p,
		Type:     typ,
		Major:    int64(unix.Major(uint64(st.Rdev))),
		Minor:    int64(unix.Minor(uint64(st.Rdev))),
		FileMode: &mode,
		UID:      &uid,
		GID:      &gid,
	}, true
}
