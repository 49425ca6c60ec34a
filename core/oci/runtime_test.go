package oci

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthd/berth/internal/testutil/require"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		require.Missing(t, "root")
	}
}

// busyboxRootfs builds a minimal root filesystem from the host's static
// busybox, with users root, bob (1000, also in wheel and audio) and
// alice (1001).
func busyboxRootfs(t *testing.T, dir string) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		require.Missing(t, "busybox (busybox-static)")
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "mnt", "home/bob"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "etc/passwd"),
		"root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:Bob:/home/bob:/bin/sh\nalice:x:1001:1001::/:/bin/sh\n")
	writeFile(t, filepath.Join(dir, "etc/group"),
		"root:x:0:\nwheel:x:10:root,bob\naudio:x:29:bob\nbob:x:1000:\nalice:x:1001:\n")
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomName(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// runtimeNames lists the OCI runtimes to test against; each must exist.
var runtimeNames = []string{"runc", "crun"}

// forEachRuntime runs fn as a subtest per OCI runtime.
func forEachRuntime(t *testing.T, fn func(t *testing.T, rt *ociRuntime)) {
	requireRoot(t)
	for _, name := range runtimeNames {
		t.Run(name, func(t *testing.T) {
			bin, err := exec.LookPath(name)
			if err != nil {
				require.Missing(t, name)
			}
			fn(t, newRuntime(t, bin))
		})
	}
}

// ociRuntime runs containers with one runtime binary, a private state
// root and a private cgroup parent, removing all of them afterwards.
type ociRuntime struct {
	bin, root, cgroupParent string
	// hideUnified runs the runtime in a private mount namespace without
	// the host's cgroup v2 mount (see newRuntime).
	hideUnified bool
}

func newRuntime(t *testing.T, bin string) *ociRuntime {
	root, err := os.MkdirTemp("", "b-oci-")
	if err != nil {
		t.Fatal(err)
	}
	rt := &ociRuntime{bin: bin, root: root, cgroupParent: "berth-oci-test-" + randomName(t)}
	// crun refuses to run anything on a hybrid cgroup host whose v2
	// hierarchy holds controllers; without that mount (in a mount
	// namespace of the test's own) it uses the v1 hierarchies like runc.
	if filepath.Base(bin) == "crun" && hybridWithV2Controllers() {
		if _, err := exec.LookPath("unshare"); err != nil {
			require.Missing(t, "unshare (util-linux) to run crun on this hybrid cgroup host")
		}
		rt.hideUnified = true
	}
	t.Cleanup(func() {
		removeCgroups(t, rt.cgroupParent)
		os.RemoveAll(root)
	})
	return rt
}

// command returns the runtime invocation with args after the global flags.
func (rt *ociRuntime) command(ctx context.Context, args ...string) *exec.Cmd {
	args = append([]string{"--root", rt.root}, args...)
	if !rt.hideUnified {
		return exec.CommandContext(ctx, rt.bin, args...)
	}
	wrapper := []string{"--mount", "--propagation", "private", "sh", "-c",
		`umount /sys/fs/cgroup/unified && exec "$0" "$@"`, rt.bin}
	return exec.CommandContext(ctx, "unshare", append(wrapper, args...)...)
}

// hybridWithV2Controllers reports a cgroup v1 host whose unified (v2)
// hierarchy also holds controllers.
func hybridWithV2Controllers() bool {
	data, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	return err == nil && strings.TrimSpace(string(data)) != ""
}

// removeCgroups removes the cgroup directory parent (and the container
// directories the runtime left in it) from every hierarchy.
func removeCgroups(t *testing.T, parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", parent))
	more, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", parent))
	for _, d := range append(dirs, more...) {
		subs, _ := filepath.Glob(filepath.Join(d, "*"))
		for _, s := range subs {
			if fi, err := os.Stat(s); err == nil && fi.IsDir() {
				os.Remove(s)
			}
		}
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
}

type runResult struct {
	stdout, stderr string
	exit           int
}

// run builds a busybox bundle, generates its spec with the options opts
// returns for the rootfs' host path, runs the container to completion and
// deletes it.
func (rt *ociRuntime) run(t *testing.T, opts func(rootfs string) []SpecOpt) runResult {
	t.Helper()
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	busyboxRootfs(t, rootfs)
	id := "c" + randomName(t)
	all := append([]SpecOpt{WithCgroupsPath("/" + rt.cgroupParent + "/" + id)}, opts(rootfs)...)
	s, err := Generate(context.Background(), "test", id, all...)
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := rt.command(ctx, "run", "--bundle", bundle, id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	// run removes the container when its process exits; delete covers a
	// failure half way.
	_ = rt.command(context.Background(), "delete", "--force", id).Run()
	res := runResult{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.exit = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("%s run: %v", rt.bin, err)
	}
	return res
}

// mustRun runs the container and fails unless it exits 0.
func (rt *ociRuntime) mustRun(t *testing.T, opts func(rootfs string) []SpecOpt) string {
	t.Helper()
	res := rt.run(t, opts)
	if res.exit != 0 {
		t.Fatalf("container exited %d\nstdout: %s\nstderr: %s", res.exit, res.stdout, res.stderr)
	}
	return res.stdout
}

func shell(script string) SpecOpt { return WithProcessArgs("/bin/sh", "-c", script) }

// only wraps fixed options that do not need the rootfs.
func only(opts ...SpecOpt) func(string) []SpecOpt {
	return func(string) []SpecOpt { return opts }
}

// lines splits output into trimmed non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func TestRuntimeIdentity(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *ociRuntime) {
		out := rt.mustRun(t, func(rootfs string) []SpecOpt {
			return []SpecOpt{
				shell(`id -u; id -g; id -G; echo "FOO=$FOO"; echo "HOSTNAME=$HOSTNAME"; pwd; hostname`),
				WithUser(rootfs, "bob"),
				WithEnv("FOO=bar baz"),
				WithWorkingDir("/home/bob"),
				WithHostname("berth-test"),
			}
		})
		got := lines(out)
		want := []string{"1000", "1000", "", "FOO=bar baz", "HOSTNAME=berth-test", "/home/bob", "berth-test"}
		if len(got) != len(want) {
			t.Fatalf("output lines %q, want %d lines", got, len(want))
		}
		groups := strings.Fields(got[2])
		slices.Sort(groups)
		if !slices.Equal(groups, []string{"10", "1000", "29"}) {
			t.Errorf("groups %v, want 10 29 1000", groups)
		}
		for i, w := range want {
			if i != 2 && got[i] != w {
				t.Errorf("line %d = %q, want %q", i, got[i], w)
			}
		}
	})
}

func TestRuntimeUserWithGroup(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *ociRuntime) {
		out := rt.mustRun(t, func(rootfs string) []SpecOpt {
			return []SpecOpt{shell("id -u; id -g; id -G"), WithUser(rootfs, "1001:audio")}
		})
		if got := lines(out); !slices.Equal(got, []string{"1001", "29", "29"}) {
			t.Fatalf("ids %q, want 1001, 29, 29", got)
		}
	})
}

func TestRuntimeReadonlyRootfs(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *ociRuntime) {
		res := rt.run(t, only(shell("touch /newfile"), WithReadonlyRootfs(true)))
		if res.exit == 0 || !strings.Contains(res.stderr+res.stdout, "Read-only file system") {
			t.Fatalf("write to read-only rootfs: exit %d, output %q %q", res.exit, res.stdout, res.stderr)
		}
		// The tmpfs mounts stay writable.
		rt.mustRun(t, only(shell("touch /dev/shm/x /dev/y"), WithReadonlyRootfs(true)))
		// The same write succeeds on a writable rootfs.
		rt.mustRun(t, only(shell("touch /newfile")))
	})
}

func TestRuntimePidsLimit(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *ociRuntime) {
		// ash exits when it cannot fork a background job; with the limit
		// the loop cannot finish.
		script := "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 60 & done; echo survived"
		res := rt.run(t, only(shell(script), WithPidsLimit(6)))
		if res.exit == 0 || strings.Contains(res.stdout, "survived") {
			t.Fatalf("12 processes started under a limit of 6: exit %d, %q %q", res.exit, res.stdout, res.stderr)
		}
		out := rt.mustRun(t, only(shell("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"), WithPidsLimit(6)))
		if strings.TrimSpace(out) != "6" {
			t.Errorf("pids.max %q, want 6", out)
		}
		out = rt.mustRun(t, only(shell(script+"; kill $(jobs -p)")))
		if !strings.Contains(out, "survived") {
			t.Errorf("without a limit the loop failed: %q", out)
		}
	})
}

// capEff reads the CapEff mask a container reports.
func capEff(t *testing.T, out string) uint64 {
	t.Helper()
	for _, l := range lines(out) {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no CapEff in %q", out)
	return 0
}

func capMask(caps []string) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << uint(capabilityNumbers[c])
	}
	return m
}

func TestRuntimeCapabilities(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *ociRuntime) {
		out := rt.mustRun(t, only(shell("grep CapEff /proc/self/status"), WithCapabilities([]string{"sys_nice"}, []string{"NET_RAW", "cap_chown"})))
		got := capEff(t, out)
		want, _ := ApplyCapabilityChanges(DefaultCapabilities(), []string{"CAP_SYS_NICE"}, []string{"CAP_NET_RAW", "CAP_CHOWN"})
		if got != capMask(want) {
			t.Fatalf("CapEff %x, want %x (%v)", got, capMask(want), want)
		}
		for _, c := range []string{"CAP_NET_RAW", "CAP_CHOWN"} {
			if got&(1<<uint(capabilityNumbers[c])) != 0 {
				t.Errorf("%s still effective", c)
			}
		}
		res := rt.run(t, only(shell("chown 1000 /tmp"), WithCapabilities(nil, []string{"CHOWN", "DAC_OVERRIDE", "FOWNER"})))
		if res.exit == 0 {
			t.Errorf("chown succeeded without CAP_CHOWN")
		}
	})
}

func TestRuntimeSeccomp(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *ociRuntime) {
		out := rt.mustRun(t, only(shell("grep '^Seccomp:' /proc/self/status; ls / >/dev/null && echo ok"), WithDefaultSeccomp()))
		if got := lines(out); !slices.Equal(got, []string{"Seccomp:\t2", "ok"}) && !slices.Equal(got, []string{"Seccomp: 2", "ok"}) {
			t.Fatalf("output %q, want the filter mode 2 and ok", got)
		}
		// Creating a user namespace needs no capability, but the profile
		// denies unshare without CAP_SYS_ADMIN.
		free := rt.run(t, only(shell("unshare -U true && echo created"), WithSeccompUnconfined()))
		if free.exit != 0 {
			t.Skipf("this host refuses user namespaces in containers even without seccomp: %q", free.stderr+free.stdout)
		}
		res := rt.run(t, only(shell("unshare -U true && echo created"), WithDefaultSeccomp()))
		if res.exit == 0 || strings.Contains(res.stdout, "created") {
			t.Fatalf("unshare allowed under the default profile: %q", res.stdout)
		}
		if !strings.Contains(res.stderr+res.stdout, "not permitted") {
			t.Errorf("unshare failed without EPERM: %q", res.stderr)
		}
	})
}

func TestRuntimePrivileged(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *ociRuntime) {
		out := rt.mustRun(t, only(shell("mount -t tmpfs none /mnt && grep -c ' /mnt ' /proc/mounts && grep CapEff /proc/self/status && grep '^Seccomp:' /proc/self/status && test -c /dev/kmsg && echo dev"), WithPrivileged()))
		if got := lines(out); len(got) != 4 || got[0] != "1" || !strings.HasSuffix(got[2], "0") || got[3] != "dev" {
			t.Fatalf("privileged output %q: want a tmpfs on /mnt, no seccomp, host devices", got)
		}
		if got, want := capEff(t, out), capMask(CurrentCapabilities()); got != want {
			t.Errorf("CapEff %x, want all current %x", got, want)
		}
		res := rt.run(t, only(shell("mount -t tmpfs none /mnt")))
		if res.exit == 0 {
			t.Errorf("mount succeeded in an unprivileged container")
		}
	})
}

// TestRuntimeRunConfig runs a spec with most docker run settings at once,
// the way berthd builds it, and checks them from inside the container.
func TestRuntimeRunConfig(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *ociRuntime) {
		host := t.TempDir()
		hosts := filepath.Join(host, "hosts")
		writeFile(t, hosts, "127.0.0.1 localhost berth-host-file\n")
		// A stand-in init with the tini calling convention: init -- cmd...
		initBin := filepath.Join(host, "init")
		writeFile(t, initBin, "#!/bin/sh\n[ \"$1\" = -- ] && shift\necho init-ran\nexec \"$@\"\n")
		if err := os.Chmod(initBin, 0o755); err != nil {
			t.Fatal(err)
		}
		script := `cat /etc/hosts; id -u; echo "MODE=$MODE"; pwd
grep -E ' /(proc/sys|dev/shm) ' /proc/mounts
wc -c < /proc/interrupts
cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max
grep '^Seccomp:' /proc/self/status
ulimit -n`
		out := rt.mustRun(t, func(rootfs string) []SpecOpt {
			cfg := &RunConfig{
				Rootfs:     rootfs,
				Image:      ocispec.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"false"}, Env: []string{"MODE=image"}, WorkingDir: "/tmp", User: "alice"},
				Overrides:  ImageOverrides{Args: []string{script}, Env: []string{"MODE=user"}},
				Memory:     64 << 20,
				ShmSize:    1 << 20,
				Ulimits:    []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 321, Hard: 321}},
				HostsFiles: HostsFiles{Hosts: hosts},
				InitBinary: initBin,
			}
			return cfg.SpecOpts("c" + randomName(t))
		})
		got := lines(out)
		want := []string{
			"init-ran", "127.0.0.1 localhost berth-host-file", "1001", "MODE=user", "/tmp",
			"", "", // /dev/shm and /proc/sys mount lines, checked below
			"0", strconv.Itoa(64 << 20), "", "321",
		}
		if len(got) != len(want) {
			t.Fatalf("output %q", got)
		}
		for i, w := range want {
			if w != "" && got[i] != w {
				t.Errorf("line %d: %q, want %q", i, got[i], w)
			}
		}
		for _, l := range got[5:7] {
			f := strings.Fields(l)
			switch f[1] {
			case "/dev/shm":
				if !strings.Contains(f[3], "size=1024k") {
					t.Errorf("/dev/shm options %s", f[3])
				}
			case "/proc/sys":
				if !strings.HasPrefix(f[3], "ro,") {
					t.Errorf("/proc/sys options %s", f[3])
				}
			}
		}
		if !strings.HasSuffix(got[9], "2") {
			t.Errorf("seccomp %q", got[9])
		}
	})
}
