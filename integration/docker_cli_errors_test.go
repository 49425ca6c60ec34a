package integration

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBadInput: each mistake is one clear line with docker's exit code,
// and leaves nothing behind: no container record, no writable layer.
func TestBadInput(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"run", "--no-such-flag", "busybox"}, 125, "unknown flag: --no-such-flag"},
		{[]string{"run", "--pull", "never", "no-such-image"}, 125, "image \"docker.io/library/no-such-image:latest\" not found: import or pull it"},
		{[]string{"run", "127.0.0.1:1/nowhere/image"}, 125, "pulling it failed"},
		{[]string{"run", "--memory", "12qq", "busybox"}, 125, "invalid value \"12qq\" for --memory"},
		{[]string{"run", "--memory", "1k", "busybox"}, 125, "the minimum is 6MB"},
		{[]string{"run", "--cpus", "lots", "busybox"}, 125, "--cpus"},
		{[]string{"run", "--name", "bad name", "busybox"}, 125, "invalid container name \"bad name\""},
		{[]string{"run", "--name", "-x", "busybox"}, 125, ""},
		{[]string{"create", "--name", "a/b", "busybox"}, 125, "invalid container name"},
		{[]string{"run", "--restart", "sometimes", "busybox"}, 125, "--restart"},
		{[]string{"run", "--restart", "always", "--rm", "busybox"}, 125, "conflicting options"},
		{[]string{"run", "--stop-signal", "SIGNOPE", "busybox"}, 125, "unknown signal"},
		{[]string{"run", "--ulimit", "nofile", "busybox"}, 125, "--ulimit"},
		{[]string{"run", "--log-opt", "max-size=huge", "busybox"}, 125, "max-size"},
		{[]string{"run", "--user", "nobody-here", "busybox", "true"}, 125, "no user \"nobody-here\""},
		{[]string{"run", "-w", "relative", "busybox", "true"}, 125, "not an absolute path"},
		{[]string{"run", "--platform", "linux/s390x", "--pull", "never", "busybox", "true"}, 125, ""},
		{[]string{"run", "--cap-add", "NOT_A_CAP", "busybox", "true"}, 125, "NOT_A_CAP"},
		{[]string{"run", "bad::ref", "true"}, 125, "invalid image reference"},
		{[]string{"run"}, 125, "needs at least 1 argument"},
	} {
		r := d.Berth(tc.args...)
		if r.ExitCode != tc.code {
			t.Errorf("berth %s: exit %d, want %d\nstderr: %s", strings.Join(tc.args, " "), r.ExitCode, tc.code, r.Stderr)
		}
		if !strings.Contains(r.Stderr, tc.msg) {
			t.Errorf("berth %s: stderr %q lacks %q", strings.Join(tc.args, " "), r.Stderr, tc.msg)
		}
		// One line of error (a pull may report its progress before).
		if lines := strings.Count(r.Stderr, "berth: "); lines != 1 || !strings.HasPrefix(lastLine(r.Stderr), "berth: ") {
			t.Errorf("berth %s: want one error line, last:\n%s", strings.Join(tc.args, " "), r.Stderr)
		}
	}
	if records, active := containersLeft(t, d); len(records) > 0 || len(active) > 0 {
		t.Errorf("failed creates left containers %v and writable layers %v", records, active)
	}
	if out := d.MustCtr("containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("ctr sees containers: %q", out)
	}

	// Commands on containers.
	d.MustBerth("run", "-d", "--name", "up", "busybox", "sleep", "300")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"rm", "up"}, 1, "you cannot remove a running container"},
		{[]string{"start", "nosuch"}, 1, "no such container: nosuch (see 'berth ps -a')"},
		{[]string{"stop", "nosuch"}, 1, "no such container"},
		{[]string{"logs", "nosuch"}, 1, "no such container"},
		{[]string{"commit", "up", "Bad::Ref"}, 125, "invalid image reference"},
		{[]string{"commit", "-c", "RUN rm -rf /", "up", "fine"}, 1, "unknown instruction"},
		{[]string{"exec", "up", "nosuchcmd"}, 127, "executable file not found"},
		{[]string{"exec", "up", "/etc/passwd"}, 126, "permission denied"},
		{[]string{"exec", "-w", "rel", "up", "true"}, 1, "not absolute"},
		{[]string{"kill", "-s", "NOPE", "up"}, 1, "unknown signal"},
		{[]string{"rename", "up", "bad name"}, 125, "invalid container name"},
		{[]string{"cp", "up:/a", "up:/b"}, 125, "between containers"},
		{[]string{"cp", "/a", "/b"}, 125, "must name a container"},
		{[]string{"ps", "--filter", "colour=blue"}, 1, "filter key \"colour\""},
		{[]string{"ps", "--format", "{{.Nope"}, 125, "--format"},
		{[]string{"wait", "--condition", "soon", "up"}, 1, "wait condition"},
		{[]string{"top", "up", "--no-such-ps-option"}, 1, "ps"},
		{[]string{"stop", "-t", "-5", "up"}, 125, "--time"},
		{[]string{"port", "up", "99999"}, 125, "invalid port"},
		{[]string{"inspect", "--type", "volume", "up"}, 125, "--type"},
	} {
		r := d.Berth(tc.args...)
		if r.ExitCode != tc.code || !strings.Contains(r.Stderr, tc.msg) {
			t.Errorf("berth %s: exit %d (want %d), stderr %q (want %q)", strings.Join(tc.args, " "), r.ExitCode, tc.code, r.Stderr, tc.msg)
		}
	}
	if st := state(t, d, "up"); !st.Running {
		t.Errorf("the bad commands stopped the container: %+v", st)
	}
}

func TestTopStatsPortInspect(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	d.MustBerth("run", "-d", "--name", "busy", "--memory", "64m", "busybox", "sh", "-c", "sleep 301 & sleep 302")
	top := d.MustBerth("top", "busy")
	for _, want := range []string{"PID", "CMD", "sleep 301", "sleep 302"} {
		if !strings.Contains(top, want) {
			t.Errorf("top lacks %q:\n%s", want, top)
		}
	}
	if top := d.MustBerth("top", "busy", "-o", "pid,comm"); !strings.Contains(top, "COMMAND") || strings.Count(top, "sleep") != 2 {
		t.Errorf("top -o pid,comm:\n%s", top)
	}
	stats := d.MustBerth("stats", "--no-stream")
	for _, want := range []string{"CONTAINER ID", "CPU %", "MEM USAGE / LIMIT", "busy", "64MiB", "PIDS"} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats lacks %q:\n%s", want, stats)
		}
	}
	var rows []struct {
		Name     string
		PIDs     uint64
		MemBytes uint64
		MemLimit uint64
	}
	if err := json.Unmarshal([]byte(d.MustBerth("stats", "--no-stream", "--format", "json", "busy")), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("stats json: %v %+v", err, rows)
	}
	if r := rows[0]; r.Name != "busy" || r.PIDs != 2 || r.MemBytes == 0 || r.MemLimit != 64<<20 {
		t.Errorf("stats: %+v", r)
	}
	// No ports are published until the network wiring lands.
	if out := d.MustBerth("port", "busy"); out != "" {
		t.Errorf("port: %q", out)
	}
	wantExit(t, d.Berth("port", "busy", "80/tcp"), 1, "no public port '80/tcp'")
	var info []map[string]any
	if err := json.Unmarshal([]byte(d.MustBerth("inspect", "busy")), &info); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"Id", "Created", "Path", "Args", "State", "Image", "Name", "RestartCount", "HostConfig", "Config", "Mounts", "NetworkSettings", "LogPath"} {
		if _, ok := info[0][key]; !ok {
			t.Errorf("inspect lacks %s", key)
		}
	}
	if got := d.MustBerth("inspect", "-f", "{{.Name}} {{.State.Status}} {{.HostConfig.Memory}}", "busy"); got != "/busy running 67108864\n" {
		t.Errorf("inspect -f: %q", got)
	}
	// inspect finds images too.
	if got := d.MustBerth("inspect", "-f", "{{.Name}}", "busybox"); got != "docker.io/library/busybox:latest\n" {
		t.Errorf("inspect of an image: %q", got)
	}
	wantExit(t, d.Berth("inspect", "nothing-by-this-name"), 1, "no such object")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
