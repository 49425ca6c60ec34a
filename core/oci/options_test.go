package oci

import (
	"context"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestResolveCommand(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"serve", "--port=80"}}
	cmdOnly := ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}
	tests := []struct {
		name string
		img  ocispec.ImageConfig
		o    ImageOverrides
		want []string
	}{
		{"image as is", img, ImageOverrides{}, []string{"/entry", "-x", "serve", "--port=80"}},
		{"args replace cmd", img, ImageOverrides{Args: []string{"debug"}}, []string{"/entry", "-x", "debug"}},
		{"entrypoint clears cmd", img, ImageOverrides{Entrypoint: []string{"/bin/sh"}, EntrypointSet: true}, []string{"/bin/sh"}},
		{"entrypoint and args", img, ImageOverrides{Entrypoint: []string{"/bin/sh"}, EntrypointSet: true, Args: []string{"-c", "true"}}, []string{"/bin/sh", "-c", "true"}},
		{"empty entrypoint and args", img, ImageOverrides{Entrypoint: []string{""}, EntrypointSet: true, Args: []string{"ls"}}, []string{"ls"}},
		{"cmd only image", cmdOnly, ImageOverrides{}, []string{"/bin/sh"}},
		{"cmd only image with args", cmdOnly, ImageOverrides{Args: []string{"ls", "-l"}}, []string{"ls", "-l"}},
		{"entrypoint unset is not an override", img, ImageOverrides{Entrypoint: []string{"/ignored"}}, []string{"/entry", "-x", "serve", "--port=80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveCommand(tt.img, tt.o)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	for name, c := range map[string]struct {
		img ocispec.ImageConfig
		o   ImageOverrides
	}{
		"empty image":                 {ocispec.ImageConfig{}, ImageOverrides{}},
		"entrypoint cleared, no args": {img, ImageOverrides{Entrypoint: []string{""}, EntrypointSet: true}},
	} {
		_, err := ResolveCommand(c.img, c.o)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		wantInvalid(t, err, "no command")
	}
}

func TestWithImageConfig(t *testing.T) {
	root := userRootfs(t)
	img := ocispec.ImageConfig{
		Cmd:        []string{"/bin/app"},
		Env:        []string{"PATH=/app/bin:/bin", "MODE=prod", "KEEP=1"},
		WorkingDir: "/srv",
		User:       "bob",
	}
	s := gen(t, WithImageConfig(root, img, ImageOverrides{}))
	p := s.Process
	if !slices.Equal(p.Args, []string{"/bin/app"}) || p.Cwd != "/srv" || p.User.UID != 1000 {
		t.Errorf("args %q cwd %q user %+v", p.Args, p.Cwd, p.User)
	}
	if !slices.Equal(p.Env, []string{"PATH=/app/bin:/bin", "MODE=prod", "KEEP=1"}) {
		t.Errorf("env %q", p.Env)
	}

	s = gen(t, WithImageConfig(root, img, ImageOverrides{
		Env: []string{"MODE=dev", "NEW=x", "KEEP"}, WorkingDir: "/tmp/", User: "alice:staff",
	}))
	p = s.Process
	if !slices.Equal(p.Env, []string{"PATH=/app/bin:/bin", "MODE=dev", "NEW=x"}) {
		t.Errorf("merged env %q", p.Env)
	}
	if p.Cwd != "/tmp" || p.User.UID != 1001 || p.User.GID != 50 {
		t.Errorf("cwd %q user %+v", p.Cwd, p.User)
	}

	// An image without env keeps the default PATH; a relative image
	// working directory is taken from /.
	s = gen(t, WithImageConfig("", ocispec.ImageConfig{Cmd: []string{"x"}, WorkingDir: "work"}, ImageOverrides{}))
	if !slices.Equal(s.Process.Env, []string{"PATH=" + DefaultPath}) || s.Process.Cwd != "/work" {
		t.Errorf("env %q cwd %q", s.Process.Env, s.Process.Cwd)
	}

	for name, c := range map[string]struct {
		o   ImageOverrides
		bad string
	}{
		"relative workdir": {ImageOverrides{WorkingDir: "rel"}, "rel"},
		"unknown user":     {ImageOverrides{User: "mallory"}, "mallory"},
		"bad env":          {ImageOverrides{Env: []string{"=x"}}, "=x"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Generate(context.Background(), "ns", "id", WithImageConfig(root, img, c.o))
			wantInvalid(t, err, c.bad)
		})
	}
}

func TestMergeEnv(t *testing.T) {
	base := []string{"PATH=/bin", "A=1", "B=2"}
	got, err := MergeEnv(base, []string{"A=10", "C=3", "B", "D=", "A=11"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"PATH=/bin", "A=11", "C=3", "D="}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if base[1] != "A=1" {
		t.Fatal("base changed")
	}
	for _, bad := range []string{"=1", "", "A=\x00"} {
		_, err := MergeEnv(nil, []string{bad})
		wantInvalid(t, err, strconv.Quote(bad)[1:len(strconv.Quote(bad))-1])
	}
}

func TestProcessOptions(t *testing.T) {
	s := gen(t,
		WithProcessArgs("/bin/sh", "-c", "true"),
		WithEnv("FOO=bar", "PATH=/x"),
		WithWorkingDir("/var/../tmp"),
		WithTTY(true),
		WithHostname("web-1"),
		WithNoNewPrivileges(true),
		WithOOMScoreAdj(-500),
		WithAnnotations(map[string]string{"a": "1"}),
		WithAnnotations(map[string]string{"b": "2", "a": "3"}),
	)
	p := s.Process
	if !slices.Equal(p.Args, []string{"/bin/sh", "-c", "true"}) || p.Cwd != "/tmp" || !p.Terminal || !p.NoNewPrivileges {
		t.Errorf("process %+v", p)
	}
	if want := []string{"PATH=/x", "FOO=bar", "TERM=xterm", "HOSTNAME=web-1"}; !slices.Equal(p.Env, want) {
		t.Errorf("env %q, want %q", p.Env, want)
	}
	if s.Hostname != "web-1" || *p.OOMScoreAdj != -500 {
		t.Errorf("hostname %q oom %d", s.Hostname, *p.OOMScoreAdj)
	}
	if s.Annotations["a"] != "3" || s.Annotations["b"] != "2" {
		t.Errorf("annotations %v", s.Annotations)
	}
	// Variables the image or user set win over the generated ones.
	s = gen(t, WithEnv("TERM=dumb", "HOSTNAME=mine"), WithTTY(true), WithHostname("h"))
	if slices.Contains(s.Process.Env, "TERM=xterm") || slices.Contains(s.Process.Env, "HOSTNAME=h") {
		t.Errorf("env %q overrode user values", s.Process.Env)
	}

	for name, c := range map[string]struct {
		opt SpecOpt
		bad string
	}{
		"empty args":      {WithProcessArgs(), "empty"},
		"relative cwd":    {WithWorkingDir("home"), "home"},
		"long hostname":   {WithHostname(strings.Repeat("h", 65)), strings.Repeat("h", 65)},
		"hostname slash":  {WithHostname("a/b"), "a/b"},
		"oom too low":     {WithOOMScoreAdj(-1001), "-1001"},
		"oom too high":    {WithOOMScoreAdj(1001), "1001"},
		"bad env":         {WithEnv("A=1", "=2"), "=2"},
		"bad rlimit":      {WithRlimits(specs.POSIXRlimit{Type: "RLIMIT_nofile", Soft: 1, Hard: 1}), "RLIMIT_nofile"},
		"soft above hard": {WithRlimits(specs.POSIXRlimit{Type: "RLIMIT_NPROC", Soft: 2, Hard: 1}), "RLIMIT_NPROC"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Generate(context.Background(), "ns", "id", c.opt)
			wantInvalid(t, err, c.bad)
		})
	}
}

func TestWithRlimits(t *testing.T) {
	s := gen(t, WithRlimits(
		specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 4096, Hard: 8192},
		specs.POSIXRlimit{Type: "RLIMIT_NPROC", Soft: 10, Hard: 20},
	))
	want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 4096, Hard: 8192}, {Type: "RLIMIT_NPROC", Soft: 10, Hard: 20}}
	if !slices.Equal(s.Process.Rlimits, want) {
		t.Fatalf("rlimits %+v", s.Process.Rlimits)
	}
}

func TestWithInit(t *testing.T) {
	s := gen(t, WithProcessArgs("/app", "run"), WithInit("/usr/bin/tini"))
	if !slices.Equal(s.Process.Args, []string{InitPath, "--", "/app", "run"}) {
		t.Errorf("args %q", s.Process.Args)
	}
	m := mountAt(s, InitPath)
	if m == nil || m.Source != "/usr/bin/tini" || m.Type != "bind" || !slices.Contains(m.Options, "ro") {
		t.Errorf("init mount %+v", m)
	}
	// With the host's or another container's PID namespace there is an
	// init already.
	for _, nsOpt := range []SpecOpt{WithHostNamespace(specs.PIDNamespace), WithNamespace(specs.PIDNamespace, "/proc/1/ns/pid")} {
		s = gen(t, WithProcessArgs("/app"), nsOpt, WithInit("/usr/bin/tini"))
		if !slices.Equal(s.Process.Args, []string{"/app"}) || mountAt(s, InitPath) != nil {
			t.Errorf("init added without a PID namespace of the container's own: %q", s.Process.Args)
		}
	}
	_, err := Generate(context.Background(), "ns", "id", WithInit("/usr/bin/tini"))
	wantInvalid(t, err, "arguments")
	_, err = Generate(context.Background(), "ns", "id", WithProcessArgs("/x"), WithInit("tini"))
	wantInvalid(t, err, "tini")
}

func TestCapabilityChanges(t *testing.T) {
	current := CurrentCapabilities()
	if len(current) == 0 {
		t.Fatal("no current capabilities read")
	}
	tests := []struct {
		name      string
		add, drop []string
		want      func() []string
	}{
		{"nothing", nil, nil, DefaultCapabilities},
		{"drop two, any spelling", nil, []string{"net_raw", "CAP_chown"}, func() []string {
			return slices.DeleteFunc(DefaultCapabilities(), func(c string) bool { return c == "CAP_NET_RAW" || c == "CAP_CHOWN" })
		}},
		{"add one", []string{"SYS_ADMIN"}, nil, func() []string { return append(DefaultCapabilities(), "CAP_SYS_ADMIN") }},
		{"add present one", []string{"KILL"}, nil, DefaultCapabilities},
		{"drop all add one", []string{"NET_BIND_SERVICE"}, []string{"all"}, func() []string { return []string{"CAP_NET_BIND_SERVICE"} }},
		{"add all drop one", []string{"ALL"}, []string{"MKNOD"}, func() []string {
			return slices.DeleteFunc(slices.Clone(current), func(c string) bool { return c == "CAP_MKNOD" })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := gen(t, WithCapabilities(tt.add, tt.drop))
			want := sortCapabilities(tt.want())
			c := s.Process.Capabilities
			if !slices.Equal(c.Bounding, want) || !slices.Equal(c.Effective, want) || !slices.Equal(c.Permitted, want) || len(c.Inheritable) != 0 {
				t.Fatalf("capabilities %+v, want %v", c, want)
			}
		})
	}
	_, err := Generate(context.Background(), "ns", "id", WithCapabilities([]string{"FLY"}, nil))
	wantInvalid(t, err, "FLY")
	_, err = Generate(context.Background(), "ns", "id", WithCapabilities(nil, []string{"CAP_TELEPORT"}))
	wantInvalid(t, err, "CAP_TELEPORT")

	s := gen(t, WithCapabilityList("chown", "CAP_KILL"))
	if !slices.Equal(s.Process.Capabilities.Bounding, []string{"CAP_CHOWN", "CAP_KILL"}) {
		t.Errorf("list %v", s.Process.Capabilities.Bounding)
	}
	if len(KnownCapabilities()) != 41 {
		t.Errorf("known capabilities %d, want 41", len(KnownCapabilities()))
	}
}

func TestWithMemory(t *testing.T) {
	const m = 256 << 20
	s := gen(t, WithMemory(m, 0))
	mem := s.Linux.Resources.Memory
	if *mem.Limit != m {
		t.Fatalf("limit %d", *mem.Limit)
	}
	if swapAccounting() {
		if mem.Swap == nil || *mem.Swap != 2*m {
			t.Errorf("default swap %v, want twice the limit", mem.Swap)
		}
		if s := gen(t, WithMemory(m, -1)); *s.Linux.Resources.Memory.Swap != -1 {
			t.Errorf("unlimited swap %d", *s.Linux.Resources.Memory.Swap)
		}
		if s := gen(t, WithMemory(m, m)); *s.Linux.Resources.Memory.Swap != m {
			t.Errorf("swap equal to limit %d", *s.Linux.Resources.Memory.Swap)
		}
	} else if mem.Swap != nil {
		t.Errorf("swap %d set on a host without swap accounting", *mem.Swap)
	}
	if s := gen(t, WithMemory(0, -1)); s.Linux.Resources.Memory != nil {
		t.Errorf("no limit set a memory section")
	}
	for name, c := range map[string]struct {
		limit, swap int64
		bad         string
	}{
		"negative":         {-1, 0, "-1"},
		"below minimum":    {1 << 20, 0, "1048576"},
		"swap below limit": {m, m - 1, strconv.Itoa(m - 1)},
		"swap no limit":    {0, m, strconv.Itoa(m)},
		"swap below -1":    {m, -2, "-2"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Generate(context.Background(), "ns", "id", WithMemory(c.limit, c.swap))
			wantInvalid(t, err, c.bad)
		})
	}
}

func TestCPUOptions(t *testing.T) {
	nano, err := ParseCPUs("0.5")
	if err != nil {
		t.Fatal(err)
	}
	s := gen(t, WithCPUs(nano), WithCPUShares(512), WithCPUSet("0", "0"))
	c := s.Linux.Resources.CPU
	if *c.Period != 100000 || *c.Quota != 50000 || *c.Shares != 512 || c.Cpus != "0" || c.Mems != "0" {
		t.Fatalf("cpu %+v", c)
	}
	if runtime.NumCPU() >= 2 {
		s = gen(t, WithCPUs(15e8))
		if *s.Linux.Resources.CPU.Quota != 150000 {
			t.Errorf("1.5 cpus quota %d", *s.Linux.Resources.CPU.Quota)
		}
	}
	if s := gen(t, WithCPUs(0), WithCPUShares(0), WithCPUSet("", "")); s.Linux.Resources.CPU != nil {
		t.Errorf("zero values set cpu %+v", s.Linux.Resources.CPU)
	}
	too := strconv.Itoa(runtime.NumCPU() + 1)
	for name, c := range map[string]struct {
		opt SpecOpt
		bad string
	}{
		"too many cpus":   {WithCPUs(int64(runtime.NumCPU()+1) * 1e9), too},
		"negative cpus":   {WithCPUs(-1e9), "-1"},
		"tiny cpus":       {WithCPUs(1e6), "0.001"},
		"shares too high": {WithCPUShares(300000), "300000"},
		"shares too low":  {WithCPUShares(1), "1"},
		"bad cpuset":      {WithCPUSet("0-", ""), "0-"},
		"reversed range":  {WithCPUSet("3-1", ""), "3-1"},
		"bad mems":        {WithCPUSet("", "a"), `"a"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Generate(context.Background(), "ns", "id", c.opt)
			wantInvalid(t, err, c.bad)
		})
	}
	for _, ok := range []string{"0", "0-3", "0,2,4-7", "1-1"} {
		if !validIDList(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
}

func TestWithPidsLimit(t *testing.T) {
	if s := gen(t, WithPidsLimit(100)); *s.Linux.Resources.Pids.Limit != 100 {
		t.Errorf("limit %d", *s.Linux.Resources.Pids.Limit)
	}
	for _, unlimited := range []int64{0, -1} {
		if s := gen(t, WithPidsLimit(10), WithPidsLimit(unlimited)); s.Linux.Resources.Pids != nil {
			t.Errorf("%d left a limit", unlimited)
		}
	}
	_, err := Generate(context.Background(), "ns", "id", WithPidsLimit(-5))
	wantInvalid(t, err, "-5")
}

func TestCgroupsPath(t *testing.T) {
	if s := gen(t, WithCgroupsPath("/berth/default/c1")); s.Linux.CgroupsPath != "/berth/default/c1" {
		t.Errorf("path %q", s.Linux.CgroupsPath)
	}
	if s := gen(t, WithSystemdCgroup("berth.slice", "berth", "c1")); s.Linux.CgroupsPath != "berth.slice:berth:c1" {
		t.Errorf("systemd path %q", s.Linux.CgroupsPath)
	}
	if s := gen(t, WithSystemdCgroup("", "berth", "c1")); s.Linux.CgroupsPath != ":berth:c1" {
		t.Errorf("systemd path %q", s.Linux.CgroupsPath)
	}
	for _, c := range []struct {
		opt SpecOpt
		bad string
	}{
		{WithCgroupsPath("rel/path"), "rel/path"},
		{WithCgroupsPath("/a/../b"), "/a/../b"},
		{WithCgroupsPath("/"), `"/"`},
		{WithSystemdCgroup("system", "berth", "c1"), "system"},
		{WithSystemdCgroup("a/b.slice", "berth", "c1"), "a/b.slice"},
		{WithSystemdCgroup("berth.slice", "", "c1"), "prefix"},
		{WithSystemdCgroup("berth.slice", "berth", "c:1"), "c:1"},
	} {
		_, err := Generate(context.Background(), "ns", "id", c.opt)
		wantInvalid(t, err, c.bad)
	}
}

func TestWithMounts(t *testing.T) {
	s := gen(t, WithMounts(
		BindMount("/host/data/sub", "/data/sub", true),
		BindMount("/host/data", "/data/", false),
		specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/host/shm", Options: []string{"rbind"}},
		specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "size=1m"}},
	))
	want := []string{"/proc", "/dev", "/sys", "/data", "/run", "/dev/pts", "/dev/shm", "/dev/mqueue", "/data/sub", "/sys/fs/cgroup"}
	if got := destinations(s); !slices.Equal(got, want) {
		t.Fatalf("mounts %v, want %v", got, want)
	}
	if m := mountAt(s, "/dev/shm"); m.Source != "/host/shm" {
		t.Errorf("/dev/shm not replaced: %+v", m)
	}
	if m := mountAt(s, "/data/sub"); !slices.Equal(m.Options, []string{"rbind", "rprivate", "ro"}) {
		t.Errorf("read-only bind options %v", m.Options)
	}
	if m := mountAt(s, "/data"); slices.Contains(m.Options, "ro") {
		t.Errorf("writable bind options %v", m.Options)
	}

	// A /dev of the user's own replaces the default mounts under /dev.
	s = gen(t, WithMounts(BindMount("/dev", "/dev", false)))
	if got := destinations(s); !slices.Equal(got, []string{"/proc", "/dev", "/sys", "/sys/fs/cgroup"}) {
		t.Errorf("with a user /dev: %v", got)
	}

	_, err := Generate(context.Background(), "ns", "id", WithMounts(BindMount("/x", "relative", false)))
	wantInvalid(t, err, "relative")
	_, err = Generate(context.Background(), "ns", "id", WithMounts(specs.Mount{Destination: "/x"}))
	wantInvalid(t, err, "/x")
}

func TestWithShmSize(t *testing.T) {
	s := gen(t, WithShmSize(128<<20))
	opts := mountAt(s, "/dev/shm").Options
	if !slices.Contains(opts, "size=134217728") || slices.Contains(opts, "size=65536k") {
		t.Errorf("shm options %v", opts)
	}
	_, err := Generate(context.Background(), "ns", "id", WithShmSize(0))
	wantInvalid(t, err, "0")
	_, err = Generate(context.Background(), "ns", "id", WithMounts(BindMount("/h", "/dev/shm", false)), WithShmSize(1<<20))
	wantInvalid(t, err, "/dev/shm")
}

func TestReadonlyRootfsAndHostsFiles(t *testing.T) {
	files := HostsFiles{Hosts: "/run/c/hosts", ResolvConf: "/run/c/resolv.conf", Hostname: "/run/c/hostname"}
	s := gen(t, WithHostsFiles(files))
	if s.Root.Readonly {
		t.Error("rootfs read-only by default")
	}
	for dst, src := range map[string]string{"/etc/hosts": files.Hosts, "/etc/resolv.conf": files.ResolvConf, "/etc/hostname": files.Hostname} {
		m := mountAt(s, dst)
		if m == nil || m.Source != src || slices.Contains(m.Options, "ro") {
			t.Errorf("%s mount %+v", dst, m)
		}
	}
	s = gen(t, WithReadonlyRootfs(true), WithHostsFiles(HostsFiles{Hosts: "/run/c/hosts"}))
	if !s.Root.Readonly || !slices.Contains(mountAt(s, "/etc/hosts").Options, "ro") || mountAt(s, "/etc/resolv.conf") != nil {
		t.Errorf("read-only rootfs: root %+v mounts %v", s.Root, destinations(s))
	}
	for _, m := range []string{"/dev", "/dev/shm", "/dev/pts", "/dev/mqueue", "/proc"} {
		if slices.Contains(mountAt(s, m).Options, "ro") {
			t.Errorf("%s made read-only", m)
		}
	}
	_, err := Generate(context.Background(), "ns", "id", WithHostsFiles(HostsFiles{ResolvConf: "resolv.conf"}))
	wantInvalid(t, err, "resolv.conf")
}

func TestNamespaceOptions(t *testing.T) {
	s := gen(t, WithNetNSPath("/var/run/netns/c1"), WithHostNamespace(specs.IPCNamespace), WithNamespace(specs.CgroupNamespace, ""))
	got := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		got[n.Type] = n.Path
	}
	if p, ok := got[specs.NetworkNamespace]; !ok || p != "/var/run/netns/c1" {
		t.Errorf("network namespace %q", p)
	}
	if _, ok := got[specs.IPCNamespace]; ok {
		t.Error("ipc namespace kept")
	}
	if _, ok := got[specs.CgroupNamespace]; !ok || len(got) != 5 {
		t.Errorf("namespaces %v", got)
	}
	s = gen(t, WithHostname("h"), WithHostNamespace(specs.UTSNamespace))
	if s.Hostname != "" {
		t.Errorf("hostname %q kept with the host's UTS namespace", s.Hostname)
	}
	for _, c := range []struct {
		opt SpecOpt
		bad string
	}{
		{WithNetNSPath(""), "empty"},
		{WithNetNSPath("netns/c1"), "netns/c1"},
		{WithNamespace("bogus", ""), "bogus"},
		{WithHostNamespace("bogus"), "bogus"},
	} {
		_, err := Generate(context.Background(), "ns", "id", c.opt)
		wantInvalid(t, err, c.bad)
	}
}

func TestSysctls(t *testing.T) {
	ok := map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000", "fs.mqueue.msg_max": "20", "net/core/somaxconn": "1024"}
	s := gen(t, WithSysctls(ok))
	if len(s.Linux.Sysctl) != len(ok) {
		t.Errorf("sysctls %v", s.Linux.Sysctl)
	}
	for _, c := range []struct {
		opts []SpecOpt
		bad  string
	}{
		{[]SpecOpt{WithSysctls(map[string]string{"kernel.panic": "1"})}, "kernel.panic"},
		{[]SpecOpt{WithSysctls(map[string]string{"vm.swappiness": "1"})}, "vm.swappiness"},
		{[]SpecOpt{WithHostNamespace(specs.NetworkNamespace), WithSysctls(map[string]string{"net.ipv4.ip_forward": "1"})}, "net.ipv4.ip_forward"},
		{[]SpecOpt{WithHostNamespace(specs.IPCNamespace), WithSysctls(map[string]string{"kernel.sem": "1"})}, "kernel.sem"},
		{[]SpecOpt{WithSysctls(map[string]string{"net..x": "1"})}, "net..x"},
	} {
		_, err := Generate(context.Background(), "ns", "id", c.opts...)
		wantInvalid(t, err, c.bad)
	}
}

func TestNetworkSysctlDefaults(t *testing.T) {
	s := gen(t, WithSysctls(map[string]string{"net.ipv4.ip_unprivileged_port_start": "1024"}), WithNetworkSysctlDefaults())
	if s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "1024" {
		t.Errorf("user value overridden: %v", s.Linux.Sysctl)
	}
	if sysctlExists("net.ipv4.ping_group_range") {
		s = gen(t, WithNetworkSysctlDefaults())
		if s.Linux.Sysctl["net.ipv4.ping_group_range"] != "0 2147483647" {
			t.Errorf("sysctls %v", s.Linux.Sysctl)
		}
	}
	s = gen(t, WithHostNamespace(specs.NetworkNamespace), WithNetworkSysctlDefaults())
	if len(s.Linux.Sysctl) != 0 {
		t.Errorf("host network got sysctls %v", s.Linux.Sysctl)
	}
}

func TestWithPrivileged(t *testing.T) {
	s := gen(t, WithDefaultSeccomp(), WithCapabilities(nil, []string{"ALL"}), WithPrivileged())
	if !slices.Equal(s.Process.Capabilities.Bounding, CurrentCapabilities()) {
		t.Errorf("capabilities %v, want the current %v", s.Process.Capabilities.Bounding, CurrentCapabilities())
	}
	l := s.Linux
	if l.Seccomp != nil || l.MaskedPaths != nil || l.ReadonlyPaths != nil {
		t.Errorf("seccomp %v masked %v readonly %v", l.Seccomp != nil, l.MaskedPaths, l.ReadonlyPaths)
	}
	if !slices.Equal(l.Resources.Devices, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}) {
		t.Errorf("device rules %+v", l.Resources.Devices)
	}
	i := slices.IndexFunc(l.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" })
	if i < 0 || l.Devices[i].Type != "c" || l.Devices[i].Major != 1 || l.Devices[i].Minor != 3 {
		t.Errorf("host /dev/null not among %d devices", len(l.Devices))
	}
	for _, d := range l.Devices {
		if strings.HasPrefix(d.Path, "/dev/pts/") || d.Path == "/dev/console" {
			t.Errorf("device %s passed through", d.Path)
		}
	}
	for _, m := range []string{"/sys", "/sys/fs/cgroup"} {
		opts := mountAt(s, m).Options
		if slices.Contains(opts, "ro") || !slices.Contains(opts, "rw") {
			t.Errorf("%s options %v", m, opts)
		}
	}
}

func TestSeccompOptions(t *testing.T) {
	hasMount := func(s *specs.Spec) bool {
		for _, sc := range s.Linux.Seccomp.Syscalls {
			if slices.Contains(sc.Names, "mount") {
				return true
			}
		}
		return false
	}
	s := gen(t, WithDefaultSeccomp())
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno || hasMount(s) {
		t.Fatalf("default profile %+v", s.Linux.Seccomp)
	}
	if s := gen(t, WithCapabilities([]string{"SYS_ADMIN"}, nil), WithDefaultSeccomp()); !hasMount(s) {
		t.Error("mount not allowed with CAP_SYS_ADMIN")
	}
	if s := gen(t, WithDefaultSeccomp(), WithSeccompUnconfined()); s.Linux.Seccomp != nil {
		t.Error("unconfined left a profile")
	}
	custom := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	if s := gen(t, WithSeccompProfile(custom)); s.Linux.Seccomp != custom {
		t.Error("custom profile not applied")
	}
	_, err := Generate(context.Background(), "ns", "id", WithSeccompProfile(nil))
	wantInvalid(t, err, "empty")
}

func TestRunConfig(t *testing.T) {
	root := userRootfs(t)
	adj := 100
	cfg := &RunConfig{
		Rootfs:         root,
		Image:          ocispec.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"serve"}, Env: []string{"PATH=/bin"}, User: "bob"},
		Overrides:      ImageOverrides{Args: []string{"debug"}, Env: []string{"X=1"}},
		GroupAdd:       []string{"staff"},
		TTY:            true,
		Memory:         64 << 20,
		NanoCPUs:       1e9,
		PidsLimit:      50,
		CapDrop:        []string{"NET_RAW"},
		Ulimits:        []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 10}},
		OOMScoreAdj:    &adj,
		ShmSize:        1 << 20,
		Mounts:         []specs.Mount{BindMount("/srv", "/srv", true)},
		HostsFiles:     HostsFiles{Hosts: "/run/h"},
		InitBinary:     "/usr/bin/tini",
		Annotations:    map[string]string{"k": "v"},
		ReadonlyRootfs: true,
	}
	s, err := cfg.Spec(context.Background(), "default", "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	p := s.Process
	if !slices.Equal(p.Args, []string{InitPath, "--", "/entry", "debug"}) {
		t.Errorf("args %q", p.Args)
	}
	if s.Hostname != "0123456789ab" || !slices.Contains(p.Env, "HOSTNAME=0123456789ab") || !slices.Contains(p.Env, "X=1") || !slices.Contains(p.Env, "TERM=xterm") {
		t.Errorf("hostname %q env %q", s.Hostname, p.Env)
	}
	if p.User.UID != 1000 || !slices.Equal(p.User.AdditionalGids, []uint32{1000, 10, 29, 50}) {
		t.Errorf("user %+v", p.User)
	}
	if slices.Contains(p.Capabilities.Bounding, "CAP_NET_RAW") || s.Linux.Seccomp == nil {
		t.Errorf("capabilities %v seccomp %v", p.Capabilities.Bounding, s.Linux.Seccomp != nil)
	}
	if !s.Root.Readonly || !slices.Contains(mountAt(s, "/etc/hosts").Options, "ro") || mountAt(s, "/srv") == nil || mountAt(s, InitPath) == nil {
		t.Errorf("root %+v mounts %v", s.Root, destinations(s))
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.CPU.Quota != 100000 || *r.Pids.Limit != 50 || *p.OOMScoreAdj != 100 || p.Rlimits[0].Soft != 10 || s.Annotations["k"] != "v" {
		t.Errorf("resources %+v", r)
	}

	priv := &RunConfig{Overrides: ImageOverrides{Args: []string{"sh"}}, Privileged: true, HostNetwork: true, HostUTS: true, HostPID: true, HostIPC: true}
	s, err = priv.Spec(context.Background(), "default", "abc")
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp != nil || len(s.Linux.Namespaces) != 1 || s.Hostname != "" || len(s.Linux.Sysctl) != 0 {
		t.Errorf("privileged host spec: seccomp %v namespaces %v hostname %q sysctls %v", s.Linux.Seccomp != nil, s.Linux.Namespaces, s.Hostname, s.Linux.Sysctl)
	}
	privProfile := &RunConfig{Overrides: ImageOverrides{Args: []string{"sh"}}, Privileged: true, SeccompProfile: &specs.LinuxSeccomp{DefaultAction: specs.ActLog}}
	if s, _ := privProfile.Spec(context.Background(), "default", "abc"); s.Linux.Seccomp == nil {
		t.Error("explicit profile dropped for a privileged container")
	}

	bad := &RunConfig{Overrides: ImageOverrides{Args: []string{"sh"}}, CapAdd: []string{"WARP"}}
	_, err = bad.Spec(context.Background(), "default", "abc")
	wantInvalid(t, err, "WARP")
	if _, err := (&RunConfig{}).Spec(context.Background(), "default", "abc"); err == nil {
		t.Error("a run with no command succeeded")
	}
}
