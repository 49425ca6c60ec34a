package oci

import (
	"os"
	"path/filepath"
	"slices"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	// SpecVersion is the ociVersion written into specs. Everything berth
	// sets exists in runtime-spec 1.0.2, and crun before 1.9 refuses any
	// version that is not 1.0.x.
	SpecVersion = "1.0.2-dev"
	// DefaultRootfsPath is the rootfs directory relative to the bundle.
	DefaultRootfsPath = "rootfs"
	// DefaultPath is the PATH a container gets unless its image sets one.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// DefaultShmSize is the size of /dev/shm: 64 MiB.
	DefaultShmSize = 64 << 20
	// defaultNofile is the soft and hard RLIMIT_NOFILE.
	defaultNofile = 1024
)

// defaultCapabilities is the set Docker and containerd grant a container:
// enough to behave like root inside its own files, nothing that reaches
// the host.
var defaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// DefaultCapabilities returns the capabilities a container gets by default.
func DefaultCapabilities() []string { return slices.Clone(defaultCapabilities) }

// defaultMounts are the filesystems every container gets. /dev is a tmpfs
// the runtime fills with the default device nodes; sysfs and the cgroup
// tree are read-only so the container cannot reconfigure the host.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// staticMaskedPaths leak host information or offer host controls; the
// runtime hides them (a read-only empty tmpfs or /dev/null on top).
var staticMaskedPaths = []string{
	"/proc/acpi",
	"/proc/asound",
	"/proc/interrupts",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/sys/devices/virtual/powercap",
	"/sys/firmware",
}

// maskedPaths adds each CPU's thermal_throttle directory, whose files let
// a container read host-wide throttling counters; the spec takes no globs,
// so they are listed from the host once.
var maskedPaths = sync.OnceValue(func() []string {
	paths := slices.Clone(staticMaskedPaths)
	matches, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle")
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.IsDir() {
			paths = append(paths, m)
		}
	}
	return paths
})

// DefaultMaskedPaths returns the paths a container cannot see.
func DefaultMaskedPaths() []string { return slices.Clone(maskedPaths()) }

var readonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// DefaultReadonlyPaths returns the /proc paths a container may read only.
func DefaultReadonlyPaths() []string { return slices.Clone(readonlyPaths) }

func devRule(major, minor int64) specs.LinuxDeviceCgroup {
	r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Access: "rwm"}
	if major >= 0 {
		r.Major = &major
	}
	if minor >= 0 {
		r.Minor = &minor
	}
	return r
}

// defaultDeviceRules is the device cgroup allowlist: deny everything, then
// allow creating nodes (using them still needs an allow rule), the default
// device nodes and the container's ptys. It is complete on its own, so it
// does not depend on the runtime appending its own defaults. (Docker also
// lists a deny for /dev/fuse; under deny-all it changes nothing, and after
// the mknod wildcard runc's cgroup v1 emulation refuses it.)
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	rules := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Access: "m"},
		{Allow: true, Type: "b", Access: "m"},
		devRule(1, 3),    // /dev/null
		devRule(1, 5),    // /dev/zero
		devRule(1, 7),    // /dev/full
		devRule(1, 8),    // /dev/random
		devRule(1, 9),    // /dev/urandom
		devRule(5, 0),    // /dev/tty
		devRule(5, 1),    // /dev/console
		devRule(5, 2),    // /dev/ptmx
		devRule(136, -1), // /dev/pts/*
	}
	return rules
}

func defaultNamespaces() []specs.LinuxNamespace {
	return []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.NetworkNamespace},
	}
}

// DefaultSpec returns the spec of a container with nothing asked for: the
// default mounts, namespaces, capabilities, device allowlist, masked and
// read-only paths, PATH, cwd "/", uid 0, RLIMIT_NOFILE 1024, and the
// cgroup "/<namespace>/<id>" (cgroupfs driver). It has no process
// arguments and no seccomp profile; options add those.
func DefaultSpec(namespace, id string) *specs.Spec {
	caps := DefaultCapabilities()
	return &specs.Spec{
		Version: SpecVersion,
		Root:    &specs.Root{Path: DefaultRootfsPath},
		Process: &specs.Process{
			Cwd: "/",
			Env: []string{"PATH=" + DefaultPath},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: slices.Clone(caps),
				Permitted: slices.Clone(caps),
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: defaultNofile, Hard: defaultNofile}},
		},
		Mounts: defaultMounts(),
		Linux: &specs.Linux{
			CgroupsPath:   "/" + namespace + "/" + id,
			Namespaces:    defaultNamespaces(),
			Resources:     &specs.LinuxResources{Devices: defaultDeviceRules()},
			MaskedPaths:   DefaultMaskedPaths(),
			ReadonlyPaths: DefaultReadonlyPaths(),
		},
	}
}
