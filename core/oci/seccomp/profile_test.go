package seccomp

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// verdict evaluates p for one call the way the kernel filter would:
// the first matching rule decides (rules for one call are alternatives),
// otherwise the default action. It returns the action and errno.
func verdict(p *specs.LinuxSeccomp, name string, args ...uint64) (specs.LinuxSeccompAction, uint) {
	for _, s := range p.Syscalls {
		if !slices.Contains(s.Names, name) || !argsMatch(s.Args, args) {
			continue
		}
		var errno uint
		if s.ErrnoRet != nil {
			errno = *s.ErrnoRet
		}
		return s.Action, errno
	}
	return p.DefaultAction, *p.DefaultErrnoRet
}

func argsMatch(conds []specs.LinuxSeccompArg, args []uint64) bool {
	for _, c := range conds {
		var v uint64
		if int(c.Index) < len(args) {
			v = args[c.Index]
		}
		ok := false
		switch c.Op {
		case specs.OpEqualTo:
			ok = v == c.Value
		case specs.OpNotEqual:
			ok = v != c.Value
		case specs.OpLessThan:
			ok = v < c.Value
		case specs.OpGreaterThan:
			ok = v > c.Value
		case specs.OpMaskedEqual:
			ok = v&c.Value == c.ValueTwo
		}
		if !ok {
			return false
		}
	}
	return true
}

var modern = KernelVersion{6, 1}

func TestArchitectures(t *testing.T) {
	tests := []struct {
		goarch string
		want   []specs.Arch
	}{
		{"amd64", []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}},
		{"arm64", []specs.Arch{specs.ArchAARCH64, specs.ArchARM}},
		{"s390x", []specs.Arch{specs.ArchS390X, specs.ArchS390}},
		{"wasm", nil},
	}
	for _, tt := range tests {
		if got := Profile(tt.goarch, modern, nil).Architectures; !slices.Equal(got, tt.want) {
			t.Errorf("%s: architectures %v, want %v", tt.goarch, got, tt.want)
		}
	}
}

func TestAllowedListIsClean(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range allowed {
		if seen[n] {
			t.Errorf("%s listed twice", n)
		}
		seen[n] = true
	}
	for _, n := range []string{"read", "write", "execve", "exit_group", "futex", "mmap", "rt_sigreturn", "openat", "wait4"} {
		if !seen[n] {
			t.Errorf("basic call %s is not allowed", n)
		}
	}
	// Calls the profile gates must not be allowed unconditionally.
	for _, n := range []string{"clone", "clone3", "mount", "unshare", "setns", "ptrace", "bpf", "reboot", "chroot", "socket", "personality", "io_uring_setup", "kexec_load"} {
		if seen[n] {
			t.Errorf("%s is in the unconditional list", n)
		}
	}
}

func TestProfileVerdicts(t *testing.T) {
	const (
		eperm  = uint(unix.EPERM)
		enosys = uint(unix.ENOSYS)
	)
	threadFlags := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD)
	tests := []struct {
		name   string
		goarch string
		kernel KernelVersion
		caps   []string
		call   string
		args   []uint64
		action specs.LinuxSeccompAction
		errno  uint
	}{
		{"read", "amd64", modern, nil, "read", nil, specs.ActAllow, 0},
		{"unknown call denied", "amd64", modern, nil, "kexec_load", nil, specs.ActErrno, eperm},
		{"inet socket", "amd64", modern, nil, "socket", []uint64{unix.AF_INET}, specs.ActAllow, 0},
		{"vsock socket", "amd64", modern, nil, "socket", []uint64{unix.AF_VSOCK}, specs.ActErrno, eperm},
		{"alg socket", "amd64", modern, nil, "socket", []uint64{unix.AF_ALG}, specs.ActErrno, eperm},
		{"nfc socket", "amd64", modern, nil, "socket", []uint64{unix.AF_NFC}, specs.ActAllow, 0},
		{"kcm socket", "amd64", modern, nil, "socket", []uint64{unix.AF_KCM}, specs.ActAllow, 0},
		{"personality linux32", "amd64", modern, nil, "personality", []uint64{0x8}, specs.ActAllow, 0},
		{"personality query", "amd64", modern, nil, "personality", []uint64{0xffffffff}, specs.ActAllow, 0},
		{"personality no-randomize", "amd64", modern, nil, "personality", []uint64{0x0040000}, specs.ActErrno, eperm},
		{"thread clone", "amd64", modern, nil, "clone", []uint64{threadFlags}, specs.ActAllow, 0},
		{"userns clone", "amd64", modern, nil, "clone", []uint64{unix.CLONE_NEWUSER}, specs.ActErrno, eperm},
		{"userns clone with sys_admin", "amd64", modern, []string{"CAP_SYS_ADMIN"}, "clone", []uint64{unix.CLONE_NEWUSER}, specs.ActAllow, 0},
		{"s390 clone flags second", "s390x", modern, nil, "clone", []uint64{0, unix.CLONE_NEWNET}, specs.ActErrno, eperm},
		{"s390 plain clone", "s390x", modern, nil, "clone", []uint64{unix.CLONE_NEWNET, 0}, specs.ActAllow, 0},
		{"clone3 falls back", "amd64", modern, nil, "clone3", nil, specs.ActErrno, enosys},
		{"clone3 with sys_admin", "amd64", modern, []string{"CAP_SYS_ADMIN"}, "clone3", nil, specs.ActAllow, 0},
		{"unshare", "amd64", modern, nil, "unshare", nil, specs.ActErrno, eperm},
		{"mount with sys_admin", "amd64", modern, []string{"CAP_SYS_ADMIN"}, "mount", nil, specs.ActAllow, 0},
		{"ptrace on a new kernel", "amd64", modern, nil, "ptrace", nil, specs.ActAllow, 0},
		{"ptrace on 4.4", "amd64", KernelVersion{4, 4}, nil, "ptrace", nil, specs.ActErrno, eperm},
		{"ptrace on 4.4 with sys_ptrace", "amd64", KernelVersion{4, 4}, []string{"CAP_SYS_PTRACE"}, "ptrace", nil, specs.ActAllow, 0},
		{"kcmp", "amd64", modern, nil, "kcmp", nil, specs.ActErrno, eperm},
		{"syslog with syslog", "amd64", modern, []string{"CAP_SYSLOG"}, "syslog", nil, specs.ActAllow, 0},
		{"settimeofday", "amd64", modern, nil, "settimeofday", nil, specs.ActErrno, eperm},
		{"settimeofday with sys_time", "amd64", modern, []string{"CAP_SYS_TIME"}, "settimeofday", nil, specs.ActAllow, 0},
		{"chroot with sys_chroot", "amd64", modern, []string{"CAP_SYS_CHROOT"}, "chroot", nil, specs.ActAllow, 0},
		{"reboot", "amd64", modern, []string{"CAP_SYS_CHROOT"}, "reboot", nil, specs.ActErrno, eperm},
		{"arch_prctl on amd64", "amd64", modern, nil, "arch_prctl", nil, specs.ActAllow, 0},
		{"arch_prctl on arm64", "arm64", modern, nil, "arch_prctl", nil, specs.ActErrno, eperm},
		{"set_tls on arm64", "arm64", modern, nil, "set_tls", nil, specs.ActAllow, 0},
		{"io_uring", "amd64", modern, nil, "io_uring_setup", nil, specs.ActErrno, eperm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Profile(tt.goarch, tt.kernel, tt.caps)
			action, errno := verdict(p, tt.call, tt.args...)
			if action != tt.action || errno != tt.errno {
				t.Errorf("%s%v: %s errno %d, want %s errno %d", tt.call, tt.args, action, errno, tt.action, tt.errno)
			}
		})
	}
}

func TestProfileIsFresh(t *testing.T) {
	// Callers may edit what they get; the next profile must not change.
	p := Profile("amd64", modern, nil)
	p.Syscalls[0].Names[0] = "changed"
	p.Architectures[0] = "changed"
	q := Profile("amd64", modern, nil)
	if q.Syscalls[0].Names[0] == "changed" || q.Architectures[0] == "changed" {
		t.Fatal("profiles share memory")
	}
}

func TestParseKernelVersion(t *testing.T) {
	tests := map[string]KernelVersion{
		"6.1.0-18-amd64":  {6, 1},
		"5.15.0":          {5, 15},
		"6.18.44-fc-v657": {6, 18},
		"4":               {4, 0},
		"garbage":         {},
	}
	for in, want := range tests {
		if got := ParseKernelVersion(in); got != want {
			t.Errorf("ParseKernelVersion(%q) = %v, want %v", in, got, want)
		}
	}
	if HostKernel().Major < 3 {
		t.Errorf("host kernel %v not read", HostKernel())
	}
}

func BenchmarkDefaultProfile(b *testing.B) {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	b.ReportAllocs()
	for b.Loop() {
		DefaultProfile(caps)
	}
}
