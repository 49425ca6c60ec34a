package integration

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testutil/daemon"
)

func TestLogs(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	d.MustBerth("run", "-d", "--name", "talk", "busybox", "sh", "-c",
		"for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; sleep 300")
	waitLog(t, d, "talk", "err5")
	r := d.Berth("logs", "talk")
	if r.ExitCode != 0 || r.Stdout != "out1\nout2\nout3\nout4\nout5\n" || r.Stderr != "err1\nerr2\nerr3\nerr4\nerr5\n" {
		t.Errorf("logs: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	// The shim copies stdout and stderr separately: entries of the two
	// interleave in any order, each stream's in its own.
	r = d.Berth("logs", "--tail", "2", "talk")
	if lines := strings.Count(r.Stdout+r.Stderr, "\n"); lines != 2 || !strings.HasSuffix(r.Stdout+r.Stderr, "5\n") {
		t.Errorf("--tail 2: stdout %q stderr %q", r.Stdout, r.Stderr)
	}
	r = d.Berth("logs", "-t", "--tail", "10", "talk")
	if !regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z out\d\n){5}$`).MatchString(r.Stdout) {
		t.Errorf("-t: %q", r.Stdout)
	}
	if out := d.MustBerth("logs", "--since", "1h", "talk"); !strings.Contains(out, "out1") {
		t.Errorf("--since 1h: %q", out)
	}
	future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	if r := d.Berth("logs", "--since", future, "talk"); r.Stdout+r.Stderr != "" {
		t.Errorf("--since the future: %q %q", r.Stdout, r.Stderr)
	}
	if r := d.Berth("logs", "--until", "1h", "talk"); r.Stdout+r.Stderr != "" {
		t.Errorf("--until an hour ago: %q %q", r.Stdout, r.Stderr)
	}
	wantExit(t, d.Berth("logs", "--tail", "x", "talk"), 125, "--tail")
	wantExit(t, d.Berth("logs", "--since", "yesterday", "talk"), 125, "--since")

	// -f follows until the container exits, then returns.
	d.MustBerth("run", "-d", "--name", "slow", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo tick$i; sleep 0.2; done")
	if out := d.MustBerth("logs", "-f", "slow"); out != "tick1\ntick2\ntick3\ntick4\ntick5\n" {
		t.Errorf("logs -f: %q", out)
	}
	// After the exit the log is still there.
	if out := d.MustBerth("logs", "slow"); !strings.HasSuffix(out, "tick5\n") {
		t.Errorf("logs after exit: %q", out)
	}

	// Rotation: the log keeps max-file files of about max-size.
	d.MustBerth("run", "--name", "rot", "--log-opt", "max-size=2k", "--log-opt", "max-file=2", "busybox", "sh", "-c",
		"i=0; while [ $i -lt 300 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done")
	out := d.MustBerth("logs", "rot")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) >= 300 || len(lines) < 10 || lines[len(lines)-1] != "line-299-padding-padding-padding" {
		t.Errorf("rotated log: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	var info []struct{ LogPath string }
	json.Unmarshal([]byte(d.MustBerth("inspect", "rot")), &info)
	files, _ := filepath.Glob(info[0].LogPath + "*")
	if len(files) != 2 {
		t.Errorf("log files %v, want 2", files)
	}
	// rm takes the log with it.
	d.MustBerth("rm", "rot")
	if files, _ := filepath.Glob(info[0].LogPath + "*"); len(files) != 0 {
		t.Errorf("log files left after rm: %v", files)
	}
}

func waitLog(t *testing.T, d *daemon.Daemon, ref, want string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r := d.Berth("logs", ref)
		if strings.Contains(r.Stdout+r.Stderr, want) {
			return
		}
	}
	t.Fatalf("log of %s never showed %q", ref, want)
}

// lastCount is the highest number a counting container logged.
func lastCount(t *testing.T, d *daemon.Daemon, ref string) int {
	t.Helper()
	fields := strings.Fields(d.MustBerth("logs", ref))
	if len(fields) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(fields[len(fields)-1])
	return n
}

// TestLogsAcrossBerthdRestart: the shim writes the log while berthd is
// away; after berthd is back the output written meanwhile is there, and
// logs -f follows to the container's exit.
func TestLogsAcrossBerthdRestart(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	d.MustBerth("run", "-d", "--name", "count", "busybox", "sh", "-c",
		"i=0; while [ $i -lt 40 ]; do echo $i; i=$((i+1)); sleep 0.1; done")
	waitLog(t, d, "count", "3")
	d.Stop()
	before := time.Now()
	time.Sleep(time.Second)
	d.Restart()
	if n := lastCount(t, d, "count"); n < 10 {
		t.Errorf("after %s away the log ends at %d: nothing written meanwhile?", time.Since(before), n)
	}
	out := d.MustBerth("logs", "-f", "count")
	if !strings.HasSuffix(out, "\n39\n") || strings.Count(out, "\n") != 40 {
		t.Errorf("logs -f after restart: %q", out)
	}
	if st := state(t, d, "count"); st.Status != "exited" || st.ExitCode != 0 {
		t.Errorf("state after exit while followed: %+v", st)
	}
}

func TestRestartPolicies(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	d.MustBerth("run", "-d", "--name", "fail2", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1")
	waitState(t, d, "fail2", "its retries used", func(s inspectedState) bool { return s.Status == "exited" && s.RestartCount == 2 })
	if out := d.MustBerth("logs", "fail2"); out != "run\nrun\nrun\n" {
		t.Errorf("on-failure:2 ran %q", out)
	}
	d.MustBerth("run", "-d", "--name", "ok", "--restart", "on-failure", "busybox", "true")
	time.Sleep(time.Second)
	if st := state(t, d, "ok"); st.Status != "exited" || st.RestartCount != 0 {
		t.Errorf("on-failure after exit 0: %+v", st)
	}
	d.MustBerth("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2")
	waitState(t, d, "always", "restarts", func(s inspectedState) bool { return s.RestartCount >= 2 })
	d.MustBerth("stop", "always")
	stopped := state(t, d, "always")
	time.Sleep(1500 * time.Millisecond)
	if st := state(t, d, "always"); st.Status != "exited" || st.RestartCount != stopped.RestartCount {
		t.Errorf("always after a user's stop: %+v (was %+v)", st, stopped)
	}
	d.MustBerth("run", "-d", "--name", "unless", "--restart", "unless-stopped", "busybox", "sh", "-c",
		"while [ ! -f /crash ]; do sleep 0.1; done; rm /crash; exit 2")
	d.MustBerth("kill", "unless")
	time.Sleep(time.Second)
	if st := state(t, d, "unless"); st.Status != "exited" {
		t.Errorf("unless-stopped after kill: %+v", st)
	}
	// A start clears the stop; a crash is then restarted again.
	d.MustBerth("start", "unless")
	waitState(t, d, "unless", "running", func(s inspectedState) bool { return s.Running })
	d.MustBerth("exec", "unless", "touch", "/crash")
	waitState(t, d, "unless", "a restart after its crash", func(s inspectedState) bool { return s.Running && s.RestartCount == 1 })
}

// TestRestartPoliciesAcrossBerthdKill: berthd is killed with SIGKILL;
// containers that exit meanwhile are handled when it is back, by policy.
func TestRestartPoliciesAcrossBerthdKill(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	d.MustBerth("run", "-d", "--name", "crash", "--restart", "always", "busybox", "sh", "-c", "sleep 1; exit 3")
	d.MustBerth("run", "-d", "--name", "steady", "busybox", "sleep", "300")
	d.MustBerth("run", "-d", "--name", "gone", "--rm", "busybox", "sleep", "1")
	d.MustBerth("run", "-d", "--name", "held", "--restart", "unless-stopped", "busybox", "sleep", "300")
	d.MustBerth("stop", "-t", "0", "held")
	d.MustBerth("run", "-d", "--name", "back", "--restart", "always", "busybox", "sleep", "300")
	d.MustBerth("stop", "-t", "0", "back")
	waitState(t, d, "crash", "running", func(s inspectedState) bool { return s.Running })
	steadyPid := state(t, d, "steady").Pid

	d.Kill()
	time.Sleep(2500 * time.Millisecond) // crash and gone exit while berthd is away
	d.Restart()

	st := waitState(t, d, "crash", "a restart", func(s inspectedState) bool { return s.RestartCount >= 1 })
	if st.ExitCode != 3 && !st.Running {
		t.Errorf("crash: %+v", st)
	}
	if st := state(t, d, "steady"); !st.Running || st.Pid != steadyPid {
		t.Errorf("steady after berthd's restart: %+v (pid was %d)", st, steadyPid)
	}
	waitRemoved(t, d, "gone")
	if st := state(t, d, "held"); st.Status != "exited" {
		t.Errorf("unless-stopped container stopped by a user restarted: %+v", st)
	}
	// Docker's rule: always brings a stopped container back when the
	// daemon starts.
	waitState(t, d, "back", "running", func(s inspectedState) bool { return s.Running })
	// The monitors are back: stop and exec work, exits are recorded.
	if out := d.MustBerth("exec", "steady", "echo", "hi"); out != "hi\n" {
		t.Errorf("exec after restart: %q", out)
	}
	d.MustBerth("stop", "-t", "0", "steady")
	if st := state(t, d, "steady"); st.Status != "exited" || st.ExitCode != 137 {
		t.Errorf("steady stopped after restart: %+v", st)
	}
	// ctr sees berth's containers: they are containerd records.
	if out := d.MustCtr("containers", "ls", "-q"); !strings.Contains(out, stateID(t, d, "steady")) {
		t.Errorf("ctr containers ls:\n%s", out)
	}
}

func stateID(t *testing.T, d *daemon.Daemon, ref string) string {
	t.Helper()
	return strings.TrimSpace(d.MustBerth("inspect", "-f", "{{.Id}}", ref))
}

func waitRemoved(t *testing.T, d *daemon.Daemon, ref string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if d.Berth("inspect", "--type", "container", ref).ExitCode != 0 {
			return
		}
	}
	t.Fatalf("container %s was not removed", ref)
}
