package oci

import (
	"context"
	"path"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// WithMounts adds mounts. A mount replaces any mount already at the same
// destination, and a mount at /dev also replaces the mounts under /dev
// (Docker's rule: a user-supplied /dev brings its own pts, shm and
// mqueue). Destinations must be absolute; they are cleaned. Mounts are
// kept sorted so that parents precede children.
func WithMounts(mounts ...specs.Mount) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		for _, m := range mounts {
			if !path.IsAbs(m.Destination) {
				return invalid("mount destination %q is not absolute", m.Destination)
			}
			if m.Type == "" && m.Source == "" {
				return invalid("mount at %q has neither type nor source", m.Destination)
			}
			m.Destination = path.Clean(m.Destination)
			m.Options = slices.Clone(m.Options)
			if m.Destination == "/dev" {
				s.Mounts = slices.DeleteFunc(s.Mounts, func(x specs.Mount) bool {
					return strings.HasPrefix(x.Destination, "/dev/")
				})
			}
			replaceMount(s, m)
		}
		SortMounts(s.Mounts)
		return nil
	}
}

// replaceMount puts m in place of the mount at its destination, or
// appends it.
func replaceMount(s *specs.Spec, m specs.Mount) {
	for i := range s.Mounts {
		if path.Clean(s.Mounts[i].Destination) == m.Destination {
			s.Mounts[i] = m
			return
		}
	}
	s.Mounts = append(s.Mounts, m)
}

// BindMount describes a recursive bind mount of the host path source at
// destination with private propagation, read-only if readonly.
func BindMount(source, destination string, readonly bool) specs.Mount {
	opts := []string{"rbind", "rprivate"}
	if readonly {
		opts = append(opts, "ro")
	}
	return specs.Mount{Destination: destination, Type: "bind", Source: source, Options: opts}
}

// WithReadonlyRootfs makes the root filesystem read-only. The default
// mounts the container needs to write (/dev, /dev/shm, /dev/pts,
// /dev/mqueue, /proc) stay writable, as in Docker.
func WithReadonlyRootfs(readonly bool) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if s.Root == nil {
			s.Root = &specs.Root{Path: DefaultRootfsPath}
		}
		s.Root.Readonly = readonly
		return nil
	}
}

// WithShmSize sets the size of the /dev/shm tmpfs in bytes (docker
// --shm-size); it must be positive.
func WithShmSize(size int64) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if size <= 0 {
			return invalid("shm size %d is not positive", size)
		}
		for i, m := range s.Mounts {
			if m.Destination == "/dev/shm" && m.Type == "tmpfs" {
				s.Mounts[i].Options = setOption(m.Options, "size=", strconv.FormatInt(size, 10))
				return nil
			}
		}
		return invalid("shm size %d given but the spec has no /dev/shm tmpfs", size)
	}
}

// setOption replaces the option starting with prefix ("size=") by
// prefix+value, or appends it.
func setOption(opts []string, prefix, value string) []string {
	out := slices.DeleteFunc(slices.Clone(opts), func(o string) bool { return strings.HasPrefix(o, prefix) })
	return append(out, prefix+value)
}

// clearReadonly removes "ro" from a mount's options and adds "rw".
func clearReadonly(m *specs.Mount) {
	m.Options = slices.DeleteFunc(m.Options, func(o string) bool { return o == "ro" || o == "rw" })
	m.Options = append(m.Options, "rw")
}

// HostsFiles are host files the daemon prepared for the container's name
// resolution; an empty path leaves the image's file alone.
type HostsFiles struct {
	Hosts      string // bind-mounted at /etc/hosts
	ResolvConf string // bind-mounted at /etc/resolv.conf
	Hostname   string // bind-mounted at /etc/hostname
}

// WithHostsFiles bind-mounts the given host files over /etc/hosts,
// /etc/resolv.conf and /etc/hostname. They are writable unless the rootfs
// is read-only (Docker's rule), so apply this after WithReadonlyRootfs.
func WithHostsFiles(files HostsFiles) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		readonly := s.Root != nil && s.Root.Readonly
		for _, f := range []struct{ src, dst string }{
			{files.Hosts, "/etc/hosts"},
			{files.ResolvConf, "/etc/resolv.conf"},
			{files.Hostname, "/etc/hostname"},
		} {
			if f.src == "" {
				continue
			}
			if !path.IsAbs(f.src) {
				return invalid("host file %q for %s is not an absolute path", f.src, f.dst)
			}
			replaceMount(s, BindMount(f.src, f.dst, readonly))
		}
		SortMounts(s.Mounts)
		return nil
	}
}
