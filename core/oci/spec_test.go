package oci

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// wantInvalid fails unless err is an ErrInvalidArgument whose message
// names bad.
func wantInvalid(t *testing.T, err error, bad string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one naming %q", bad)
	}
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("error %q is not ErrInvalidArgument", err)
	}
	if !strings.Contains(err.Error(), bad) {
		t.Fatalf("error %q does not name %q", err, bad)
	}
}

// gen generates a spec for container "ns/id" with opts, failing on error.
func gen(t *testing.T, opts ...SpecOpt) *specs.Spec {
	t.Helper()
	s, err := Generate(context.Background(), "ns", "id", opts...)
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	return s
}

func mountAt(s *specs.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func destinations(s *specs.Spec) []string {
	var out []string
	for _, m := range s.Mounts {
		out = append(out, m.Destination)
	}
	return out
}

func TestDefaultSpec(t *testing.T) {
	s := gen(t)
	p := s.Process
	if s.Version != SpecVersion || s.Root.Path != "rootfs" || s.Root.Readonly {
		t.Errorf("version %q root %+v", s.Version, s.Root)
	}
	if p.Cwd != "/" || !slices.Equal(p.Env, []string{"PATH=" + DefaultPath}) || p.User.UID != 0 || p.User.GID != 0 {
		t.Errorf("process cwd %q env %v user %+v", p.Cwd, p.Env, p.User)
	}
	if p.NoNewPrivileges || p.Terminal {
		t.Errorf("no_new_privs %v terminal %v, want both off", p.NoNewPrivileges, p.Terminal)
	}
	c := p.Capabilities
	if len(c.Bounding) != 14 || !slices.Equal(c.Bounding, c.Effective) || !slices.Equal(c.Bounding, c.Permitted) || len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Errorf("capabilities %+v", c)
	}
	for _, want := range []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE", "CAP_SETFCAP"} {
		if !slices.Contains(c.Bounding, want) {
			t.Errorf("default capabilities lack %s", want)
		}
	}
	if !slices.Equal(p.Rlimits, []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}}) {
		t.Errorf("rlimits %+v", p.Rlimits)
	}
	wantMounts := []string{"/proc", "/dev", "/sys", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup"}
	if got := destinations(s); !slices.Equal(got, wantMounts) {
		t.Errorf("mounts %v, want %v", got, wantMounts)
	}
	if m := mountAt(s, "/dev/shm"); !slices.Contains(m.Options, "size=65536k") {
		t.Errorf("/dev/shm options %v", m.Options)
	}
	for _, d := range []string{"/sys", "/sys/fs/cgroup"} {
		if !slices.Contains(mountAt(s, d).Options, "ro") {
			t.Errorf("%s is not read-only", d)
		}
	}
	l := s.Linux
	if l.CgroupsPath != "/ns/id" {
		t.Errorf("cgroups path %q", l.CgroupsPath)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range l.Namespaces {
		ns = append(ns, n.Type)
		if n.Path != "" {
			t.Errorf("namespace %s has path %q", n.Type, n.Path)
		}
	}
	if !slices.Equal(ns, []specs.LinuxNamespaceType{"pid", "ipc", "uts", "mount", "network"}) {
		t.Errorf("namespaces %v", ns)
	}
	for _, m := range []string{"/proc/kcore", "/proc/keys", "/sys/firmware", "/proc/timer_list"} {
		if !slices.Contains(l.MaskedPaths, m) {
			t.Errorf("%s not masked", m)
		}
	}
	if !slices.Contains(l.ReadonlyPaths, "/proc/sys") || !slices.Contains(l.ReadonlyPaths, "/proc/sysrq-trigger") {
		t.Errorf("readonly paths %v", l.ReadonlyPaths)
	}
	d := l.Resources.Devices
	if d[0].Allow || d[0].Access != "rwm" || d[0].Type != "" {
		t.Errorf("first device rule %+v, want deny all", d[0])
	}
	if !allowsDevice(d, "c", 1, 3) || !allowsDevice(d, "c", 136, 4) || allowsDevice(d, "b", 8, 0) || allowsDevice(d, "c", 10, 229) {
		t.Errorf("device rules %+v", d)
	}
	if l.Seccomp != nil {
		t.Errorf("default spec has a seccomp profile; options add it")
	}
}

// allowsDevice evaluates device cgroup rules for rw access to a node:
// the last matching rule wins.
func allowsDevice(rules []specs.LinuxDeviceCgroup, typ string, major, minor int64) bool {
	allowed := false
	for _, r := range rules {
		if (r.Type == "" || r.Type == "a" || r.Type == typ) &&
			(r.Major == nil || *r.Major == major) && (r.Minor == nil || *r.Minor == minor) &&
			strings.Contains(r.Access, "r") {
			allowed = r.Allow
		}
	}
	return allowed
}

func TestDefaultSpecsAreIndependent(t *testing.T) {
	a := DefaultSpec("a", "1")
	a.Mounts[0].Options[0] = "changed"
	a.Process.Capabilities.Bounding[0] = "changed"
	a.Linux.MaskedPaths[0] = "changed"
	b := DefaultSpec("b", "2")
	if b.Mounts[0].Options[0] == "changed" || b.Process.Capabilities.Bounding[0] == "changed" || b.Linux.MaskedPaths[0] == "changed" {
		t.Fatal("default specs share memory")
	}
	if DefaultCapabilities()[0] == "changed" {
		t.Fatal("default capabilities changed through a spec")
	}
}

func TestGenerateNeedsNames(t *testing.T) {
	_, err := Generate(context.Background(), "", "id")
	wantInvalid(t, err, "namespace")
	_, err = Generate(context.Background(), "ns", "")
	wantInvalid(t, err, "id")
}

func TestGenerateStopsAtFirstError(t *testing.T) {
	called := false
	_, err := Generate(context.Background(), "ns", "id", WithWorkingDir("relative"), func(context.Context, *specs.Spec) error {
		called = true
		return nil
	})
	wantInvalid(t, err, "relative")
	if called {
		t.Fatal("option after a failing one ran")
	}
}

func TestSortMounts(t *testing.T) {
	ms := []specs.Mount{
		{Destination: "/a/b/c"}, {Destination: "/z"}, {Destination: "/a/b"}, {Destination: "/a"}, {Destination: "/y/"},
	}
	SortMounts(ms)
	got := make([]string, len(ms))
	for i, m := range ms {
		got[i] = m.Destination
	}
	if want := []string{"/z", "/a", "/y/", "/a/b", "/a/b/c"}; !slices.Equal(got, want) {
		t.Fatalf("sorted %v, want %v", got, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*specs.Spec)
		bad  string
	}{
		{"relative cwd", func(s *specs.Spec) { s.Process.Cwd = "tmp" }, "tmp"},
		{"relative mount", func(s *specs.Spec) { s.Mounts = append(s.Mounts, specs.Mount{Destination: "data"}) }, "data"},
		{"bad capability", func(s *specs.Spec) { s.Process.Capabilities.Ambient = []string{"CAP_FLY"} }, "CAP_FLY"},
		{"bad rlimit", func(s *specs.Spec) {
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_FOO"})
		}, "RLIMIT_FOO"},
		{"double namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "pid"})
		}, "pid"},
		{"no root", func(s *specs.Spec) { s.Root = nil }, "root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultSpec("ns", "id")
			tt.edit(s)
			wantInvalid(t, Validate(s), tt.bad)
		})
	}
	if err := Validate(DefaultSpec("ns", "id")); err != nil {
		t.Fatalf("default spec invalid: %v", err)
	}
}

func BenchmarkGenerateRun(b *testing.B) {
	cfg := &RunConfig{
		Overrides: ImageOverrides{Args: []string{"/bin/sh"}, Env: []string{"A=1"}},
		Memory:    256 << 20,
		PidsLimit: 100,
		CapDrop:   []string{"NET_RAW"},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cfg.Spec(ctx, "default", "0123456789abcdef"); err != nil {
			b.Fatal(err)
		}
	}
}
