// Package seccomp holds berth's default seccomp profile: an allowlist of
// system calls that matches Docker's default profile in effect. The profile
// is data (the tables in syscalls.go); DefaultProfile tailors it to one
// architecture, kernel and capability set, the way Docker does when it
// creates a container, and returns it in runtime-spec form.
package seccomp

import (
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// KernelVersion is a kernel release as major.minor; rules that need a newer
// kernel than the host's are left out.
type KernelVersion struct {
	Major, Minor int
}

// atLeast reports whether k is the same as or newer than min.
func (k KernelVersion) atLeast(min KernelVersion) bool {
	if k.Major != min.Major {
		return k.Major > min.Major
	}
	return k.Minor >= min.Minor
}

// ParseKernelVersion reads "6.1.0-18-amd64" style releases; trailing text
// after major.minor is ignored. An unparsable release yields the zero
// version, so kernel-gated rules stay off.
func ParseKernelVersion(release string) KernelVersion {
	fields := strings.FieldsFunc(release, func(r rune) bool { return r < '0' || r > '9' })
	var k KernelVersion
	if len(fields) >= 1 {
		k.Major, _ = strconv.Atoi(fields[0])
	}
	if len(fields) >= 2 {
		k.Minor, _ = strconv.Atoi(fields[1])
	}
	return k
}

var hostKernel = sync.OnceValue(func() KernelVersion {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return KernelVersion{}
	}
	return ParseKernelVersion(unix.ByteSliceToString(u.Release[:]))
})

// HostKernel returns the running kernel's version.
func HostKernel() KernelVersion { return hostKernel() }

// Architectures returns the seccomp architectures a filter for the Go
// architecture goarch covers: the native one plus the compat ABIs a process
// could switch to (32-bit x86 and x32 on amd64, 32-bit arm on arm64), so a
// compat system call cannot slip past the filter. Unknown architectures get
// none, which makes the runtime use the native one only.
func Architectures(goarch string) []specs.Arch {
	return slices.Clone(archMap[goarch])
}

var archMap = map[string][]specs.Arch{
	"amd64":    {specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
	"386":      {specs.ArchX86},
	"arm64":    {specs.ArchAARCH64, specs.ArchARM},
	"arm":      {specs.ArchARM},
	"ppc64le":  {specs.ArchPPC64LE},
	"s390x":    {specs.ArchS390X, specs.ArchS390},
	"riscv64":  {specs.ArchRISCV64},
	"loong64":  {specs.ArchLOONGARCH64},
	"mips64":   {specs.ArchMIPS64, specs.ArchMIPS, specs.ArchMIPS64N32},
	"mips64le": {specs.ArchMIPSEL64, specs.ArchMIPSEL, specs.ArchMIPSEL64N32},
}

// DefaultProfile returns the default profile for this host (its
// architecture and kernel) and a process whose bounding capability set is
// caps ("CAP_SYS_ADMIN" style names).
func DefaultProfile(caps []string) *specs.LinuxSeccomp {
	return Profile(runtime.GOARCH, HostKernel(), caps)
}

// Profile returns the default profile for the Go architecture goarch,
// kernel version kernel and bounding capability set caps. Every system call
// not allowed fails with EPERM; clone3 fails with ENOSYS unless CAP_SYS_ADMIN
// is held, so C libraries fall back to clone, whose flags the filter can
// inspect.
func Profile(goarch string, kernel KernelVersion, caps []string) *specs.LinuxSeccomp {
	have := make(map[string]bool, len(caps))
	for _, c := range caps {
		have[c] = true
	}
	eperm := uint(unix.EPERM)
	p := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   Architectures(goarch),
	}
	p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{
		Names:  slices.Clone(allowed),
		Action: specs.ActAllow,
	})
	for _, r := range rules {
		if r.applies(goarch, kernel, have) {
			p.Syscalls = append(p.Syscalls, r.syscall())
		}
	}
	return p
}

// rule is one conditional entry of the profile.
type rule struct {
	names  []string
	action specs.LinuxSeccompAction // ActAllow when empty
	errno  uint                     // with ActErrno
	args   []specs.LinuxSeccompArg

	arches    []string // Go architectures the rule is limited to
	notArches []string // Go architectures the rule is left out on
	caps      []string // capabilities that must all be held
	notCaps   []string // capabilities any one of which leaves the rule out
	minKernel KernelVersion
}

func (r rule) applies(goarch string, kernel KernelVersion, have map[string]bool) bool {
	if len(r.arches) > 0 && !slices.Contains(r.arches, goarch) {
		return false
	}
	if slices.Contains(r.notArches, goarch) {
		return false
	}
	for _, c := range r.caps {
		if !have[c] {
			return false
		}
	}
	for _, c := range r.notCaps {
		if have[c] {
			return false
		}
	}
	return kernel.atLeast(r.minKernel)
}

func (r rule) syscall() specs.LinuxSyscall {
	s := specs.LinuxSyscall{
		Names:  slices.Clone(r.names),
		Action: r.action,
		Args:   slices.Clone(r.args),
	}
	if s.Action == "" {
		s.Action = specs.ActAllow
	}
	if s.Action == specs.ActErrno {
		errno := r.errno
		s.ErrnoRet = &errno
	}
	return s
}
