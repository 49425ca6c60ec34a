package shim_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/internal/errgrpc"
	"github.com/berthd/berth/runtime/shim"
	"github.com/berthd/berth/runtime/shim/cgroup"
)

// wantTopics checks that the container's events, in order, are exactly
// want.
func wantTopics(t *testing.T, got []event, want ...string) {
	t.Helper()
	if strings.Join(topics(got), " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", topics(got), want)
	}
}

func exits(evs []event) []*events.TaskExit {
	var out []*events.TaskExit
	for _, ev := range evs {
		if e, ok := ev.msg.(*events.TaskExit); ok {
			out = append(out, e)
		}
	}
	return out
}

func TestLifecycleExitCodeReportedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("life", []string{"sh", "-c", "exit 3"}, nil)
	c.startShim()
	pid := c.create("", "", "", false)
	if pid == 0 {
		t.Fatal("create returned pid 0")
	}
	state, err := c.shim.task.State(ctx(t), &taskapi.StateRequest{ID: c.id})
	if err != nil || state.Status != task.Status_CREATED {
		t.Fatalf("state after create: %v %v", state, err)
	}
	if got := c.start(""); got != pid {
		t.Fatalf("start pid %d, create pid %d", got, pid)
	}
	if status := c.wait(""); status != 3 {
		t.Fatalf("exit status %d, want 3", status)
	}
	state, err = c.shim.task.State(ctx(t), &taskapi.StateRequest{ID: c.id})
	if err != nil || state.Status != task.Status_STOPPED || state.ExitStatus != 3 {
		t.Fatalf("state after exit: %v %v", state, err)
	}
	resp := c.delete("")
	if resp.ExitStatus != 3 || resp.Pid != pid || resp.ExitedAt.AsTime().IsZero() {
		t.Fatalf("delete response %v", resp)
	}
	if m := mountedUnder(t, c.bundle); len(m) > 0 {
		t.Fatalf("still mounted after delete: %v", m)
	}
	c.shutdown()
	// The runtime's delete ran after Delete answered, but before the shim
	// exited.
	if _, err := os.Stat(filepath.Join(c.opts.Root, h.ns, c.id)); !os.IsNotExist(err) {
		t.Fatalf("runtime state left after the shim exited: %v", err)
	}
	// The shim flushed its queue before exiting: every event is in.
	evs := h.events.eventsFor(t, c.id)
	wantTopics(t, evs, shimTopics("create", "start", "exit", "delete")...)
	if ex := exits(evs); len(ex) != 1 || ex[0].ExitStatus != 3 || ex[0].Pid != pid || ex[0].ID != c.id {
		t.Fatalf("exit events %v", ex)
	}
	if _, err := os.Stat(strings.TrimPrefix(c.shim.address, "unix://")); !os.IsNotExist(err) {
		t.Fatalf("socket left after shutdown: %v", err)
	}
}

// TestRecreateAfterDelete creates a container of the same id in the same
// shim right after deleting it: the create waits for the runtime's delete,
// which runs after Delete answered.
func TestRecreateAfterDelete(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "runc")
	c := h.newContainer("again", []string{"true"}, nil)
	// A runtime whose delete is slow: without the wait, the next create
	// would find the old container still there.
	slow := filepath.Join(h.dir, "slow-runc")
	script := "#!/bin/sh\nfor a; do [ \"$a\" = delete ] && sleep 0.3; done\nexec runc \"$@\"\n"
	if err := os.WriteFile(slow, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c.opts.BinaryName = slow
	c.startShim()
	for i := 0; i < 3; i++ {
		c.create("", "", "", false)
		c.start("")
		if status := c.wait(""); status != 0 {
			t.Fatalf("run %d: exit status %d", i, status)
		}
		c.delete("")
	}
	c.shutdown()
}

func shimTopics(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, "/tasks/"+n)
	}
	return out
}

func TestExecExitCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("exec", []string{"sleep", "60"}, nil)
	c.startShim()
	c.create("", "", "", false)
	c.start("")
	out := h.mkfifo("exec.out")
	got := readAll(out)
	c.exec("e1", []string{"sh", "-c", "echo from-exec; exit 7"}, false, out)
	if _, err := c.shim.task.Exec(ctx(t), &taskapi.ExecProcessRequest{ID: c.id, ExecID: "e1", Spec: &anypb.Any{Value: []byte(`{"args":["true"]}`)}}); !errdefs.IsAlreadyExists(errgrpc.ToNative(err)) {
		t.Fatalf("second exec e1: %v, want already exists", err)
	}
	execPid := c.start("e1")
	if status := c.wait("e1"); status != 7 {
		t.Fatalf("exec exit status %d, want 7", status)
	}
	if s := recv(t, got); s != "from-exec\n" {
		t.Fatalf("exec output %q", s)
	}
	if resp := c.delete("e1"); resp.ExitStatus != 7 || resp.Pid != execPid {
		t.Fatalf("exec delete response %v", resp)
	}
	kill(t, c, "", 9, false)
	c.wait("")
	c.delete("")
	c.shutdown()
	evs := h.events.eventsFor(t, c.id)
	wantTopics(t, evs, shimTopics("create", "start", "exec-added", "exec-started", "exit", "exit", "delete")...)
	ex := exits(evs)
	if ex[0].ID != "e1" || ex[0].ExitStatus != 7 || ex[0].Pid != execPid || ex[1].ID != c.id || ex[1].ExitStatus != 137 {
		t.Fatalf("exit events %v", ex)
	}
}

func kill(t *testing.T, c *container, execID string, sig uint32, all bool) {
	t.Helper()
	if _, err := c.shim.task.Kill(ctx(t), &taskapi.KillRequest{ID: c.id, ExecID: execID, Signal: sig, All: all}); err != nil {
		t.Fatalf("kill %s %s: %v", c.id, execID, err)
	}
}

func TestInitExitWaitsForExecs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// No pid namespace: the exec survives init unless the shim kills it.
	c := h.newContainer("order", []string{"sleep", "60"}, func(s *specs.Spec) {
		s.Linux.Namespaces = s.Linux.Namespaces[1:]
	})
	c.startShim()
	c.create("", "", "", false)
	c.start("")
	c.exec("long", []string{"sleep", "60"}, false, "")
	c.start("long")
	kill(t, c, "", 9, false)
	if status := c.wait(""); status != 137 {
		t.Fatalf("init status %d", status)
	}
	if status := c.wait("long"); status != 137 {
		t.Fatalf("exec status %d, want 137 (killed with the container)", status)
	}
	ex := waitExits(t, h, c.id, 2)
	if len(ex) != 2 || ex[0].ID != "long" || ex[1].ID != c.id {
		t.Fatalf("exit events %v: want the exec's exit before init's", ex)
	}
}

// waitExits waits until n exit events of container id arrived.
func waitExits(t *testing.T, h *harness, id string, n int) []*events.TaskExit {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ex := exits(h.events.eventsFor(t, id))
		if len(ex) >= n || time.Now().After(deadline) {
			return ex
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTerminal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("tty", []string{"sh", "-c", "tty; stty size; echo hello"}, func(s *specs.Spec) {
		s.Process.Terminal = true
	})
	c.startShim()
	out := h.mkfifo("tty.out")
	got := readAll(out)
	c.create("", out, "", true)
	if _, err := c.shim.task.ResizePty(ctx(t), &taskapi.ResizePtyRequest{ID: c.id, Width: 100, Height: 40}); err != nil {
		t.Fatal(err)
	}
	c.start("")
	if status := c.wait(""); status != 0 {
		t.Fatalf("exit status %d", status)
	}
	s := recv(t, got)
	if !strings.HasPrefix(s, "/dev/pts/") || !strings.Contains(s, "\r\n40 100\r\nhello\r\n") {
		t.Fatalf("terminal output %q", s)
	}
	c.delete("")
}

func TestExecTerminal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("exectty", []string{"sleep", "60"}, nil)
	c.startShim()
	c.create("", "", "", false)
	c.start("")
	out := h.mkfifo("exectty.out")
	got := readAll(out)
	c.exec("t1", []string{"sh", "-c", "tty && echo on-a-tty"}, true, out)
	c.start("t1")
	if status := c.wait("t1"); status != 0 {
		t.Fatalf("exec status %d", status)
	}
	if s := recv(t, got); !strings.HasPrefix(s, "/dev/pts/") || !strings.HasSuffix(s, "on-a-tty\r\n") {
		t.Fatalf("exec terminal output %q", s)
	}
	c.delete("t1")
}

func TestFIFOStdio(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("fifo", []string{"sh", "-c", "while read l; do echo out:$l; echo err:$l >&2; done"}, nil)
	c.startShim()
	in, out, errOut := h.mkfifo("in"), h.mkfifo("out"), h.mkfifo("err")
	gotOut, gotErr := readAll(out), readAll(errOut)
	c.create(in, out, errOut, false)
	c.start("")
	w, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("ping\npong\n")
	w.Close()
	// The shim still holds stdin open; CloseIO lets end of input through.
	if _, err := c.shim.task.CloseIO(ctx(t), &taskapi.CloseIORequest{ID: c.id, Stdin: true}); err != nil {
		t.Fatal(err)
	}
	if status := c.wait(""); status != 0 {
		t.Fatalf("exit status %d", status)
	}
	if s := recv(t, gotOut); s != "out:ping\nout:pong\n" {
		t.Fatalf("stdout %q", s)
	}
	if s := recv(t, gotErr); s != "err:ping\nerr:pong\n" {
		t.Fatalf("stderr %q", s)
	}
	c.delete("")
}

type logEntry struct {
	Log    string `json:"log"`
	Stream string `json:"stream"`
	Time   string `json:"time"`
}

func TestLogFileRotation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("logs", []string{"sh", "-c", "seq 1 60; sleep 0.2; echo oops >&2"}, nil)
	c.startShim()
	logPath := filepath.Join(h.dir, "logs", "ctr.log")
	uri := "file://" + logPath + "?max-size=300&max-file=3"
	c.create("", uri, uri, false)
	c.start("")
	if status := c.wait(""); status != 0 {
		t.Fatalf("exit status %d", status)
	}
	c.delete("")
	if _, err := os.Stat(logPath + ".3"); !os.IsNotExist(err) {
		t.Fatalf("max-file=3 kept a fourth file: %v", err)
	}
	var lines []string
	stderrSeen := false
	for _, p := range []string{logPath + ".2", logPath + ".1", logPath} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 300 {
			t.Fatalf("%s is %d bytes, over max-size", p, fi.Size())
		}
		for _, e := range readLog(t, p) {
			if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
				t.Fatalf("entry time %q: %v", e.Time, err)
			}
			switch e.Stream {
			case "stdout":
				lines = append(lines, strings.TrimSuffix(e.Log, "\n"))
			case "stderr":
				stderrSeen = e.Log == "oops\n"
			default:
				t.Fatalf("entry stream %q", e.Stream)
			}
		}
	}
	if !stderrSeen {
		t.Fatal("stderr line missing from the log")
	}
	// What survived rotation is the end of the sequence, in order.
	first, err := strconv.Atoi(lines[0])
	if err != nil || len(lines) < 5 {
		t.Fatalf("log lines %q", lines)
	}
	for i, l := range lines {
		if l != strconv.Itoa(first+i) {
			t.Fatalf("log lines %q not consecutive", lines)
		}
	}
	if lines[len(lines)-1] != "60" {
		t.Fatalf("last line %q, want 60", lines[len(lines)-1])
	}
}

func readLog(t *testing.T, path string) []logEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e logEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func TestKill(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("kill", []string{"sh", "-c", "trap 'exit 42' TERM; while true; do sleep 1; done"}, nil)
	c.startShim()
	c.create("", "", "", false)
	c.start("")
	time.Sleep(200 * time.Millisecond) // let the trap be installed
	kill(t, c, "", uint32(syscall.SIGTERM), false)
	if status := c.wait(""); status != 42 {
		t.Fatalf("exit status %d, want 42 from the TERM trap", status)
	}
	_, err := c.shim.task.Kill(ctx(t), &taskapi.KillRequest{ID: c.id, Signal: 9})
	if !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("kill after exit: %v, want not found", err)
	}
	c.delete("")
}

func TestKillAll(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Without a pid namespace, killing init leaves its children: only
	// kill all reaches them.
	c := h.newContainer("killall", []string{"sh", "-c", "sleep 60 & sleep 60 & wait"}, func(s *specs.Spec) {
		s.Linux.Namespaces = s.Linux.Namespaces[1:]
	})
	c.startShim()
	c.create("", "", "", false)
	c.start("")
	pids := waitPids(t, c, 3)
	kill(t, c, "", 9, true)
	if status := c.wait(""); status != 137 {
		t.Fatalf("exit status %d", status)
	}
	for _, p := range pids {
		waitGone(t, int(p))
	}
	c.delete("")
}

// waitPids waits until the container has at least n processes.
func waitPids(t *testing.T, c *container, n int) []uint32 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.shim.task.Pids(ctx(t), &taskapi.PidsRequest{ID: c.id})
		if err != nil {
			t.Fatal(err)
		}
		var pids []uint32
		for _, p := range resp.Processes {
			pids = append(pids, p.Pid)
		}
		if len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("pids %v, want %d", pids, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("pause", []string{"sleep", "60"}, nil)
	c.startShim()
	c.create("", "", "", false)
	c.start("")
	c.exec("e", []string{"sleep", "60"}, false, "")
	c.start("e")
	if _, err := c.shim.task.Pause(ctx(t), &taskapi.PauseRequest{ID: c.id}); err != nil {
		t.Fatal(err)
	}
	for _, execID := range []string{"", "e"} {
		st, err := c.shim.task.State(ctx(t), &taskapi.StateRequest{ID: c.id, ExecID: execID})
		if err != nil || st.Status != task.Status_PAUSED {
			t.Fatalf("state %q while paused: %v %v", execID, st, err)
		}
	}
	if _, err := c.shim.task.Pause(ctx(t), &taskapi.PauseRequest{ID: c.id}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Fatalf("pause twice: %v", err)
	}
	if _, err := c.shim.task.Resume(ctx(t), &taskapi.ResumeRequest{ID: c.id}); err != nil {
		t.Fatal(err)
	}
	st, err := c.shim.task.State(ctx(t), &taskapi.StateRequest{ID: c.id})
	if err != nil || st.Status != task.Status_RUNNING {
		t.Fatalf("state after resume: %v %v", st, err)
	}
	h.events.waitEvent(t, c.id, "/tasks/resumed")
	wantTopics(t, h.events.eventsFor(t, c.id), shimTopics("create", "start", "exec-added", "exec-started", "paused", "resumed")...)
	// Killing a paused container still ends it.
	if _, err := c.shim.task.Pause(ctx(t), &taskapi.PauseRequest{ID: c.id}); err != nil {
		t.Fatal(err)
	}
	kill(t, c, "", 9, true)
	if status := c.wait(""); status != 137 {
		t.Fatalf("exit status %d", status)
	}
}

func TestPids(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("pids", []string{"sh", "-c", "sleep 60 & wait"}, nil)
	c.startShim()
	initPid := c.create("", "", "", false)
	c.start("")
	c.exec("x", []string{"sleep", "60"}, false, "")
	execPid := c.start("x")
	waitPids(t, c, 3)
	resp, err := c.shim.task.Pids(ctx(t), &taskapi.PidsRequest{ID: c.id})
	if err != nil {
		t.Fatal(err)
	}
	found := map[uint32]string{}
	for _, p := range resp.Processes {
		found[p.Pid] = ""
		if p.Info != nil {
			var d options.ProcessDetails
			if err := proto.Unmarshal(p.Info.Value, &d); err != nil || p.Info.TypeUrl != "containerd.runc.v1.ProcessDetails" {
				t.Fatalf("process info %v: %v", p.Info, err)
			}
			found[p.Pid] = d.ExecID
		}
	}
	if _, ok := found[initPid]; !ok {
		t.Fatalf("init pid %d not in %v", initPid, found)
	}
	if found[execPid] != "x" {
		t.Fatalf("exec pid %d not marked as exec x in %v", execPid, found)
	}
}

func TestStatsAndUpdate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("stats", []string{"sleep", "60"}, nil)
	c.startShim()
	c.create("", "", "", false)
	c.start("")
	limit := uint64(96 << 20)
	res, err := json.Marshal(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: int64Ptr(int64(limit))}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.shim.task.Update(ctx(t), &taskapi.UpdateTaskRequest{ID: c.id, Resources: &anypb.Any{
		TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: res,
	}}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.shim.task.Stats(ctx(t), &taskapi.StatsRequest{ID: c.id})
	if err != nil {
		t.Fatal(err)
	}
	switch resp.Stats.TypeUrl {
	case "io.containerd.cgroups.v1.Metrics":
		var m v1stats.Metrics
		if err := proto.Unmarshal(resp.Stats.Value, &m); err != nil {
			t.Fatal(err)
		}
		if m.Memory == nil || m.Memory.Usage.Usage == 0 || m.Memory.Usage.Limit != limit {
			t.Fatalf("memory stats %v, want usage and the updated limit %d", m.Memory, limit)
		}
		if m.Pids == nil || m.Pids.Current != 1 {
			t.Fatalf("pids stats %v", m.Pids)
		}
		if m.CPU == nil || m.CPU.Usage.Total == 0 || len(m.CPU.Usage.PerCPU) == 0 {
			t.Fatalf("cpu stats %v", m.CPU)
		}
	case "io.containerd.cgroups.v2.Metrics":
		var m v2stats.Metrics
		if err := proto.Unmarshal(resp.Stats.Value, &m); err != nil {
			t.Fatal(err)
		}
		if m.Memory == nil || m.Memory.Usage == 0 || m.Memory.UsageLimit != limit || m.Pids.Current != 1 {
			t.Fatalf("stats %v", &m)
		}
	default:
		t.Fatalf("stats of type %q", resp.Stats.TypeUrl)
	}
}

func int64Ptr(v int64) *int64 { return &v }

func TestOOMEvent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("oom", []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"}, func(s *specs.Spec) {
		limit := int64(16 << 20)
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
	})
	c.startShim()
	c.create("", "", "", false)
	c.start("")
	if status := c.wait(""); status != 137 {
		t.Fatalf("exit status %d, want 137 (OOM kill)", status)
	}
	h.events.waitEvent(t, c.id, "/tasks/oom")
	c.delete("")
}

func TestEventsQueuedWhileDaemonDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("queued", []string{"sh", "-c", "exit 5"}, nil)
	c.startShim()
	h.events.stop()
	// Every task call completes while nothing receives the events.
	c.create("", "", "", false)
	c.start("")
	if status := c.wait(""); status != 5 {
		t.Fatalf("exit status %d", status)
	}
	c.delete("")
	if evs := h.events.eventsFor(t, c.id); len(evs) != 0 {
		t.Fatalf("events delivered while the daemon was down: %v", topics(evs))
	}
	h.events.start(t)
	h.events.waitEvent(t, c.id, "/tasks/delete")
	evs := h.events.eventsFor(t, c.id)
	wantTopics(t, evs, shimTopics("create", "start", "exit", "delete")...)
	if ex := exits(evs); ex[0].ExitStatus != 5 {
		t.Fatalf("exit event %v", ex[0])
	}
}

func TestDeleteCommandAfterShimKilled(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("dead", []string{"sleep", "600"}, nil)
	c.opts.Root = "" // the default runtime root, derived from the address
	c.startShim()
	pid := c.create("", "", "", false)
	c.start("")
	runcState := filepath.Join(shim.DefaultRuntimeRoot(h.address), h.ns, c.id)
	if _, err := os.Stat(runcState); err != nil {
		t.Fatalf("runc state not under the default root: %v", err)
	}
	syscall.Kill(c.shim.pid, syscall.SIGKILL)
	waitGone(t, c.shim.pid)

	cmd := exec.Command(shimBinary, c.shimArgs("delete")...)
	cmd.Dir = c.bundle
	cmd.Env = c.shimEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("delete command: %v: %s", err, stderr.String())
	}
	var resp taskapi.DeleteResponse
	if err := proto.Unmarshal(out, &resp); err != nil {
		t.Fatalf("delete output: %v", err)
	}
	if resp.ExitStatus != 137 || resp.Pid != pid || resp.ExitedAt.AsTime().IsZero() {
		t.Fatalf("delete response %v", &resp)
	}
	waitGone(t, int(pid))
	if m := mountedUnder(t, c.bundle); len(m) > 0 {
		t.Fatalf("still mounted: %v", m)
	}
	if _, err := os.Stat(runcState); !os.IsNotExist(err) {
		t.Fatalf("runc state left: %v", err)
	}
	if _, err := os.Stat(strings.TrimPrefix(c.shim.address, "unix://")); !os.IsNotExist(err) {
		t.Fatalf("dead shim's socket left: %v", err)
	}
}

func TestShimOutlivesStartCommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("detached", []string{"sleep", "60"}, nil)
	s := c.startShim() // the start command has exited
	if !alive(s.pid) {
		t.Fatal("shim died with its start command")
	}
	if sid, err := unix_Getsid(s.pid); err != nil || sid != s.pid {
		t.Fatalf("shim session %d (%v), want its own (%d)", sid, err, s.pid)
	}
	address, err := os.ReadFile(filepath.Join(c.bundle, "address"))
	if err != nil || string(address) != s.address {
		t.Fatalf("address file %q (%v), start printed %q", address, err, s.address)
	}
	c.create("", "", "", false)
	c.start("")
	resp, err := s.task.Connect(ctx(t), &taskapi.ConnectRequest{ID: c.id})
	if err != nil || int(resp.ShimPid) != s.pid || resp.TaskPid == 0 {
		t.Fatalf("connect: %v %v", resp, err)
	}
	// A second start for the same container finds the running shim.
	again := exec.Command(shimBinary, c.shimArgs("start")...)
	again.Dir = c.bundle
	again.Env = c.shimEnv()
	out, err := again.Output()
	if err != nil || string(out) != s.address {
		t.Fatalf("second start: %q %v", out, err)
	}
}

func unix_Getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

func TestCrunBinaryName(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "crun")
	c := h.newContainer("crun", []string{"sh", "-c", "exit 9"}, nil)
	c.opts = &options.Options{BinaryName: "crun", Root: filepath.Join(h.dir, "crun")}
	c.startShim()
	_, err := c.shim.task.Create(ctx(t), &taskapi.CreateTaskRequest{
		ID: c.id, Bundle: c.bundle, Rootfs: c.rootfsMounts(), Options: c.optionsAny(),
	})
	if err != nil && strings.Contains(err.Error(), "hybrid mode not supported") {
		// The error comes from crun, so BinaryName chose it; crun itself
		// cannot create containers while the v2 hierarchy of a hybrid
		// cgroup host holds controllers.
		if !strings.Contains(err.Error(), "crun create:") {
			t.Fatalf("create: %v, not from crun", err)
		}
		t.Skipf("crun cannot run containers on this host: %v", err)
	}
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	// crun keeps its state under the root the options name.
	if _, err := os.Stat(filepath.Join(h.dir, "crun", h.ns, c.id)); err != nil {
		t.Fatalf("crun state: %v", err)
	}
	c.start("")
	if status := c.wait(""); status != 9 {
		t.Fatalf("exit status %d, want 9", status)
	}
	c.delete("")
	if _, err := os.Stat(filepath.Join(h.dir, "crun", h.ns, c.id)); !os.IsNotExist(err) {
		t.Fatalf("crun state left: %v", err)
	}
	c.shutdown()
}

func TestShutdownOnlyWhenEmpty(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("shutdown", []string{"sleep", "60"}, nil)
	c.startShim()
	c.create("", "", "", false)
	c.start("")
	if _, err := c.shim.task.Shutdown(ctx(t), &taskapi.ShutdownRequest{ID: c.id}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.shim.task.Connect(ctx(t), &taskapi.ConnectRequest{ID: c.id}); err != nil {
		t.Fatalf("shim stopped serving with a container left: %v", err)
	}
	kill(t, c, "", 9, false)
	c.wait("")
	c.delete("")
	c.shutdown()
}

func TestErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("errors", []string{"sleep", "60"}, nil)
	c.startShim()
	for name, call := range map[string]func() error{
		"state of unknown container": func() error {
			_, err := c.shim.task.State(ctx(t), &taskapi.StateRequest{ID: "nope"})
			return wantCode(err, errdefs.IsNotFound)
		},
		"checkpoint": func() error {
			_, err := c.shim.task.Checkpoint(ctx(t), &taskapi.CheckpointTaskRequest{ID: c.id})
			return wantCode(err, errdefs.IsNotImplemented)
		},
		"bad runtime options": func() error {
			_, err := c.shim.task.Create(ctx(t), &taskapi.CreateTaskRequest{ID: c.id, Bundle: c.bundle, Options: &anypb.Any{TypeUrl: "some.Other"}})
			return wantCode(err, errdefs.IsInvalidArgument)
		},
	} {
		if err := call(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	c.create("", "", "", false)
	c.start("")
	_, err := c.shim.task.Delete(ctx(t), &taskapi.DeleteRequest{ID: c.id})
	if err := wantCode(err, errdefs.IsFailedPrecondition); err != nil {
		t.Errorf("delete running task: %v", err)
	}
	_, err = c.shim.task.Exec(ctx(t), &taskapi.ExecProcessRequest{ID: c.id, ExecID: "../x", Spec: &anypb.Any{Value: []byte(`{"args":["true"]}`)}})
	if err := wantCode(err, errdefs.IsInvalidArgument); err != nil {
		t.Errorf("exec id with a slash: %v", err)
	}
}

func wantCode(err error, is func(error) bool) error {
	if err == nil {
		return errors.New("no error")
	}
	if !is(errgrpc.ToNative(err)) {
		return err
	}
	return nil
}

func TestGroupSharesShim(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.newContainer("groupa", []string{"sleep", "60"}, nil)
	b := h.newContainer("groupb", []string{"sh", "-c", "exit 4"}, func(s *specs.Spec) {
		s.Annotations = map[string]string{"io.containerd.runc.v2.group": a.id}
	})
	a.opts.Root, b.opts.Root = "", ""
	sa := a.startShim()
	// b's group is a: its start command finds a's shim.
	cmd := exec.Command(shimBinary, b.shimArgs("start")...)
	cmd.Dir = b.bundle
	cmd.Env = b.shimEnv()
	out, err := cmd.Output()
	if err != nil || string(out) != sa.address {
		t.Fatalf("start of b: %q %v, want a's address %s", out, err, sa.address)
	}
	b.shim = b.connect(string(out))
	if b.shim.pid != sa.pid {
		t.Fatalf("b's shim.pid %d, want a's shim %d", b.shim.pid, sa.pid)
	}
	a.create("", "", "", false)
	a.start("")
	b.create("", "", "", false)
	b.start("")
	if status := b.wait(""); status != 4 {
		t.Fatalf("b exit status %d", status)
	}
	b.delete("")
	// a still runs in the shim: Shutdown must not end it.
	if _, err := b.shim.task.Shutdown(ctx(t), &taskapi.ShutdownRequest{ID: b.id}); err != nil {
		t.Fatal(err)
	}
	st, err := a.shim.task.State(ctx(t), &taskapi.StateRequest{ID: a.id})
	if err != nil || st.Status != task.Status_RUNNING {
		t.Fatalf("a after b's shutdown: %v %v", st, err)
	}
	kill(t, a, "", 9, false)
	a.wait("")
	a.delete("")
	a.shutdown()
}

func TestStartReadsOptionsOnStdin(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.newContainer("stdin", []string{"true"}, nil)
	group := "berth-shimtest-shim-" + c.id
	dir := filepath.Join("/sys/fs/cgroup", group)
	if !cgroup.Unified() {
		dir = filepath.Join("/sys/fs/cgroup/memory", group)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts, err := proto.Marshal(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: mustMarshal(t, &options.Options{ShimCgroup: "/" + group})})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(shimBinary, c.shimArgs("start")...)
	cmd.Dir = c.bundle
	cmd.Env = c.shimEnv()
	cmd.Stdin = strings.NewReader(string(opts))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	c.shim = c.connect(string(out))
	t.Cleanup(func() {
		if alive(c.shim.pid) {
			syscall.Kill(c.shim.pid, syscall.SIGKILL)
			waitGone(t, c.shim.pid)
		}
		os.Remove(dir)
	})
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil || strings.TrimSpace(string(procs)) != strconv.Itoa(c.shim.pid) {
		t.Fatalf("shim cgroup holds %q (%v), want the shim %d", procs, err, c.shim.pid)
	}
	c.shutdown()
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
