package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testutil/daemon"
	"github.com/berthd/berth/internal/testutil/require"
)

// cliDaemon starts a berthd with busybox loaded, for the docker-style
// commands; it skips unless root and runc are here. Containers a failed
// test leaves are removed, and no shim may outlive the test.
func cliDaemon(t *testing.T, opts ...daemon.Option) *daemon.Daemon {
	t.Helper()
	require.Root(t)
	require.Binary(t, "runc")
	d := daemon.Start(t, opts...)
	d.MustBerth("load", "-i", writeArchive(t, t.TempDir(), busybox(t)))
	t.Cleanup(func() {
		// (Nothing answers when a failed test left berthd killed; the
		// leftover shims are then killed below.)
		if ids := strings.Fields(d.Berth("ps", "-aq", "--no-trunc").Stdout); len(ids) > 0 {
			d.Berth(append([]string{"rm", "-f"}, ids...)...)
		}
		checkNoShims(t, d)
	})
	return d
}

// wantExit checks a command's exit code and that stderr mentions each of
// msgs (one line of error, as berth prints them).
func wantExit(t *testing.T, r *daemon.Result, code int, msgs ...string) {
	t.Helper()
	if r.ExitCode != code {
		t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.ExitCode, code, r.Stdout, r.Stderr)
	}
	for _, m := range msgs {
		if !strings.Contains(r.Stderr, m) {
			t.Errorf("stderr %q lacks %q", r.Stderr, m)
		}
	}
}

// state reads a container's state through berth inspect.
func state(t *testing.T, d *daemon.Daemon, ref string) inspectedState {
	t.Helper()
	var out []struct {
		State        inspectedState
		RestartCount int
		Name         string
		ID           string `json:"Id"`
	}
	if err := json.Unmarshal([]byte(d.MustBerth("inspect", "--type", "container", ref)), &out); err != nil || len(out) != 1 {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	out[0].State.RestartCount = out[0].RestartCount
	return out[0].State
}

type inspectedState struct {
	Status       string
	Running      bool
	Pid          int
	ExitCode     int
	Error        string
	RestartCount int
}

// waitState polls until ref's state satisfies ok.
func waitState(t *testing.T, d *daemon.Daemon, ref string, what string, ok func(inspectedState) bool) inspectedState {
	t.Helper()
	var st inspectedState
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st = state(t, d, ref); ok(st) {
			return st
		}
	}
	t.Fatalf("container %s never got %s: %+v", ref, what, st)
	return st
}

// containersLeft lists every container record and active snapshot of the
// default namespace: after a failed create there must be none.
func containersLeft(t *testing.T, d *daemon.Daemon) (records, active []string) {
	t.Helper()
	records = strings.Fields(d.MustBerth("ps", "-aq"))
	for _, line := range strings.Split(d.MustBerth("snapshots", "ls"), "\n") {
		if strings.Contains(line, "Active") || strings.Contains(line, "active") {
			active = append(active, line)
		}
	}
	return records, active
}

// TestSeedScenario is the issue's own: an interactive shell makes a file;
// a second container of the image does not see it; both are listed as
// exited; the first is committed and its file is in the new image.
func TestSeedScenario(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	term := newTerminal(t, d, 100, 30, "run", "-it", "--name", "first", "busybox", "sh")
	term.waitFor("/ # ")
	term.send("echo made-in-first > foo; cat foo", "Enter")
	term.waitFor("made-in-first\r\n")
	term.send("exit", "Enter")
	term.waitFor("BERTH-EXIT=0")

	r := d.Berth("run", "--name", "second", "busybox", "cat", "foo")
	wantExit(t, r, 1)
	if !strings.Contains(r.Stderr, "foo") {
		t.Errorf("second container found foo? stdout %q stderr %q", r.Stdout, r.Stderr)
	}
	ps := d.MustBerth("ps", "-a")
	for _, want := range []string{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES", "first", "second", "Exited (0)", "Exited (1)", "busybox"} {
		if !strings.Contains(ps, want) {
			t.Errorf("ps -a lacks %q:\n%s", want, ps)
		}
	}
	if running := strings.TrimSpace(d.MustBerth("ps", "-q")); running != "" {
		t.Errorf("ps shows running containers: %q", running)
	}
	id := strings.TrimSpace(d.MustBerth("commit", "first", "busybox-foo"))
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(id) {
		t.Errorf("commit printed %q, want the image id", id)
	}
	if out := d.MustBerth("run", "--rm", "busybox-foo", "cat", "foo"); out != "made-in-first\n" {
		t.Errorf("run busybox-foo cat foo = %q", out)
	}
	images := d.MustBerth("images")
	if !regexp.MustCompile(`(?m)^busybox-foo\s+latest\s`).MatchString(images) || !regexp.MustCompile(`(?m)^busybox\s+latest\s`).MatchString(images) {
		t.Errorf("images lacks busybox-foo beside busybox:\n%s", images)
	}
}

func TestRunForegroundDetachedAndExitCodes(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	r := d.Berth("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
	wantExit(t, r, 3)
	if r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("stdout %q stderr %q", r.Stdout, r.Stderr)
	}
	// --rm removed it at its exit, server-side.
	if left := d.MustBerth("ps", "-aq"); left != "" {
		t.Errorf("--rm left %q", left)
	}
	// 127 for a command that is not there, 126 for one that cannot run,
	// as docker; the container stays, created.
	wantExit(t, d.Berth("run", "--name", "nf", "busybox", "nosuchcmd"), 127, "executable file not found")
	wantExit(t, d.Berth("run", "--name", "nx", "busybox", "/etc/passwd"), 126, "permission denied")
	if st := state(t, d, "nf"); st.Status != "created" || st.ExitCode != 127 || st.Error == "" {
		t.Errorf("nf state %+v", st)
	}
	// --rm removes even a container that could not start.
	wantExit(t, d.Berth("run", "--rm", "--name", "nfrm", "busybox", "nosuchcmd"), 127)
	if r := d.Berth("inspect", "nfrm"); r.ExitCode == 0 {
		t.Error("--rm container whose start failed is still there")
	}

	id := strings.TrimSpace(d.MustBerth("run", "-d", "--name", "bg", "busybox", "sleep", "300"))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("run -d printed %q, want a 64-hex id", id)
	}
	// Names, full ids and unique prefixes all find it.
	for _, ref := range []string{"bg", id, id[:12], id[:5]} {
		if st := state(t, d, ref); !st.Running || st.Pid <= 0 {
			t.Errorf("inspect %s: %+v", ref, st)
		}
	}
	ps := d.MustBerth("ps")
	if !strings.Contains(ps, id[:12]) || !strings.Contains(ps, "Up ") || !strings.Contains(ps, `"sleep 300"`) {
		t.Errorf("ps:\n%s", ps)
	}
	// Generated names are adjective_noun.
	anon := strings.TrimSpace(d.MustBerth("create", "busybox"))
	name := strings.TrimSpace(d.MustBerth("ps", "-a", "--filter", "id="+anon, "--format", "{{.Names}}"))
	if !regexp.MustCompile(`^[a-z]+_[a-z]+$`).MatchString(name) {
		t.Errorf("generated name %q", name)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(d.MustBerth("ps", "-a", "--format", "json")), &rows); err != nil || len(rows) != 4 {
		t.Errorf("ps --format json: %v, %d rows", err, len(rows))
	}
	for _, f := range []struct{ filter, want string }{
		{"status=running", "bg"}, {"status=created", "nf"}, {"name=bg", "bg"}, {"exited=127", ""},
		{"ancestor=busybox", "bg"}, {"label=nope", ""},
	} {
		got := d.MustBerth("ps", "-a", "--filter", f.filter, "--format", "{{.Names}}")
		if f.want != "" && !strings.Contains(got, f.want) {
			t.Errorf("filter %s: %q lacks %s", f.filter, got, f.want)
		}
	}
	if got := d.MustBerth("ps", "-a", "--filter", "label=nope"); strings.Count(got, "\n") != 1 {
		t.Errorf("label filter matched:\n%s", got)
	}
}

func TestRunOptions(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# comment\nFROM_FILE=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := d.MustBerth("run", "--rm", "-e", "A=1", "--env-file", envFile, "-w", "/tmp", "-u", "berth",
		"--hostname", "boat", "busybox", "sh", "-c", "echo $A $FROM_FILE; pwd; id -u; id -g; hostname")
	if out != "1 yes\n/tmp\n1000\n1000\nboat\n" {
		t.Errorf("env/workdir/user/hostname: %q", out)
	}
	if out := d.MustBerth("run", "--rm", "--entrypoint", "echo", "busybox", "via", "entrypoint"); out != "via entrypoint\n" {
		t.Errorf("--entrypoint: %q", out)
	}
	r := d.Berth("run", "--rm", "--read-only", "busybox", "touch", "/x")
	wantExit(t, r, 1)
	if !strings.Contains(r.Stderr, "Read-only") {
		t.Errorf("--read-only: %q", r.Stderr)
	}
	cg := d.MustBerth("run", "--rm", "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", "busybox", "sh", "-c",
		"cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max")
	for _, want := range []string{"67108864", "50", "50000"} {
		if !strings.Contains(cg, want) {
			t.Errorf("limits: %q lacks %s", cg, want)
		}
	}
	// The kernel's OOM killer shows in the state.
	wantExit(t, d.Berth("run", "--name", "oom", "--memory", "8m", "--memory-swap", "8m", "busybox", "sh", "-c",
		`x=$(head -c 50000000 /dev/zero | tr "\0" a); echo survived`), 137)
	if got := d.MustBerth("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "oom"); got != "true 137\n" {
		t.Errorf("OOM-killed container: %q", got)
	}
	capEff := func(args ...string) string {
		out := d.MustBerth(append(append([]string{"run", "--rm"}, args...), "busybox", "grep", "CapEff", "/proc/self/status")...)
		return strings.TrimSpace(strings.TrimPrefix(out, "CapEff:"))
	}
	def, added, dropped, priv := capEff(), capEff("--cap-add", "SYS_ADMIN"), capEff("--cap-drop", "ALL"), capEff("--privileged")
	if def == added || dropped != "0000000000000000" || priv == def {
		t.Errorf("capabilities: default %s, +SYS_ADMIN %s, -ALL %s, privileged %s", def, added, dropped, priv)
	}
	d.MustBerth("create", "--name", "lab", "--label", "team=boats", "--stop-signal", "SIGUSR1", "--restart", "on-failure:2", "busybox")
	var info []struct {
		Config     struct{ Labels map[string]string }
		HostConfig struct {
			RestartPolicy struct {
				Name              string
				MaximumRetryCount int
			}
		}
	}
	if err := json.Unmarshal([]byte(d.MustBerth("inspect", "lab")), &info); err != nil {
		t.Fatal(err)
	}
	if info[0].Config.Labels["team"] != "boats" || info[0].HostConfig.RestartPolicy.Name != "on-failure" || info[0].HostConfig.RestartPolicy.MaximumRetryCount != 2 {
		t.Errorf("inspect: %+v", info[0])
	}
	if got := strings.TrimSpace(d.MustBerth("ps", "-a", "--filter", "label=team=boats", "-q")); got == "" {
		t.Error("label filter found nothing")
	}
	// Containers made with --init run under it (pid 1 is the init).
	if _, err := exec.LookPath("tini-static"); err != nil {
		require.Missing(t, "tini-static (apt-get install tini) for --init")
	}
	if out := d.MustBerth("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline"); !strings.Contains(out, "berth-init") {
		t.Errorf("--init: pid 1 is %q", out)
	}
}

func TestLifecycleCommands(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	// A process that stops on SIGTERM quickly: stop must not need SIGKILL.
	trapTerm := `trap "echo term; exit 0" TERM; echo up; while true; do sleep 0.1; done`
	d.MustBerth("create", "--name", "c1", "busybox", "sh", "-c", trapTerm)
	if st := state(t, d, "c1"); st.Status != "created" {
		t.Fatalf("created: %+v", st)
	}
	if out := d.MustBerth("start", "c1"); out != "c1\n" {
		t.Errorf("start printed %q", out)
	}
	waitState(t, d, "c1", "running", func(s inspectedState) bool { return s.Running })
	start := time.Now()
	d.MustBerth("stop", "c1")
	if st := state(t, d, "c1"); st.Status != "exited" || st.ExitCode != 0 {
		t.Errorf("after stop: %+v", st)
	}
	if time.Since(start) > 8*time.Second {
		t.Errorf("stop took %s: SIGTERM was not enough?", time.Since(start))
	}
	// A process that ignores SIGTERM is killed after -t.
	d.MustBerth("run", "-d", "--name", "stubborn", "busybox", "sh", "-c", `trap "" TERM; while true; do sleep 0.1; done`)
	d.MustBerth("stop", "-t", "1", "stubborn")
	if st := state(t, d, "stubborn"); st.ExitCode != 137 {
		t.Errorf("stubborn: %+v", st)
	}
	// The image's StopSignal, or --stop-signal, is what stop sends.
	d.MustBerth("run", "-d", "--name", "usr1", "--stop-signal", "USR1", "busybox", "sh", "-c", `trap "exit 42" USR1; while true; do sleep 0.1; done`)
	d.MustBerth("stop", "-t", "5", "usr1")
	if st := state(t, d, "usr1"); st.ExitCode != 42 {
		t.Errorf("stop signal: %+v", st)
	}
	// start again: same writable layer.
	d.MustBerth("run", "--name", "keep", "busybox", "sh", "-c", "echo kept > /state")
	if out := d.MustBerth("start", "-a", "keep"); out != "" {
		t.Errorf("start -a printed %q", out)
	}
	if out := d.MustBerth("run", "--name", "reader", "busybox", "sh", "-c", "test -f /state && echo leaked || echo fresh"); out != "fresh\n" {
		t.Errorf("another container of the image sees the first's file: %q", out)
	}
	d.MustBerth("run", "-d", "--name", "r1", "busybox", "sh", "-c", "cat /state 2>/dev/null; echo x >> /state; sleep 300")
	d.MustBerth("restart", "-t", "1", "r1")
	waitState(t, d, "r1", "running again", func(s inspectedState) bool { return s.Running })
	if out := d.MustBerth("logs", "r1"); out != "x\n" {
		t.Errorf("restart kept the layer? logs %q", out)
	}
	// kill with a signal, pause/unpause.
	wantExit(t, d.Berth("kill", "-s", "USR1", "usr1"), 1, "not running")
	d.MustBerth("run", "-d", "--name", "p1", "busybox", "sleep", "300")
	d.MustBerth("pause", "p1")
	if st := state(t, d, "p1"); st.Status != "paused" {
		t.Errorf("pause: %+v", st)
	}
	if !strings.Contains(d.MustBerth("ps"), "(Paused)") {
		t.Error("ps does not show (Paused)")
	}
	wantExit(t, d.Berth("exec", "p1", "true"), 1, "paused")
	d.MustBerth("unpause", "p1")
	d.MustBerth("kill", "p1")
	if code := strings.TrimSpace(d.MustBerth("wait", "p1")); code != "137" {
		t.Errorf("wait after kill: %q", code)
	}
	// rename, then the old name is free.
	d.MustBerth("rename", "p1", "p2")
	wantExit(t, d.Berth("inspect", "--type", "container", "p1"), 1, "no such container", "berth ps -a")
	d.MustBerth("create", "--name", "p1", "busybox")
	// rm: running needs -f; rm -f kills.
	wantExit(t, d.Berth("rm", "r1"), 1, "stop it first")
	if !state(t, d, "r1").Running {
		t.Error("failed rm stopped the container")
	}
	d.MustBerth("rm", "-f", "r1")
	wantExit(t, d.Berth("inspect", "r1"), 1)
	// prune removes every stopped container.
	out := d.MustBerth("container", "prune", "-f")
	if !strings.Contains(out, "Deleted Containers:") || !strings.Contains(out, "Total reclaimed space:") {
		t.Errorf("prune printed:\n%s", out)
	}
	if left := d.MustBerth("ps", "-aq"); left != "" {
		t.Errorf("prune left %q", left)
	}
}

func TestWaitAndNames(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	d.MustBerth("run", "-d", "--name", "w1", "busybox", "sh", "-c", "sleep 1; exit 9")
	if out := d.MustBerth("wait", "w1"); out != "9\n" {
		t.Errorf("wait: %q", out)
	}
	wantExit(t, d.Berth("wait", "nosuch"), 1, "no such container")
	wantExit(t, d.Berth("create", "--name", "w1", "busybox"), 125, "already in use by container")
	// The holder is named in the error: its short id.
	var info []struct {
		ID string `json:"Id"`
	}
	json.Unmarshal([]byte(d.MustBerth("inspect", "w1")), &info)
	wantExit(t, d.Berth("run", "--name", "w1", "busybox", "true"), 125, info[0].ID[:12])
	// Ambiguous prefixes are refused.
	for range 20 {
		d.MustBerth("create", "busybox")
	}
	var prefixFailures int
	for c := '0'; c <= '9'; c++ {
		if r := d.Berth("inspect", "--type", "container", string(c)); r.ExitCode != 0 && strings.Contains(r.Stderr, "matches") {
			prefixFailures++
		}
	}
	for c := 'a'; c <= 'f'; c++ {
		if r := d.Berth("inspect", "--type", "container", string(c)); r.ExitCode != 0 && strings.Contains(r.Stderr, "matches") {
			prefixFailures++
		}
	}
	if prefixFailures == 0 {
		t.Error("no one-character prefix of 21 ids was ambiguous")
	}
}
