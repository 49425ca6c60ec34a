package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	eventsapi "github.com/containerd/containerd/api/events"
	eventsservice "github.com/containerd/containerd/api/services/events/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/internal/testutil/daemon"
	"github.com/berthd/berth/internal/testutil/require"
)

// The two shims every compatibility test runs with: berth's own and
// Debian's containerd-shim-runc-v2 (1.6).
var shimRuntimes = []string{"io.berth.runc.v2", "io.containerd.runc.v2"}

const busyboxRef = "docker.io/library/busybox:latest"

// runtimeDaemon starts a berthd with busybox imported and unpacked,
// skipping unless root, runc, ctr and Debian's shim are here.
func runtimeDaemon(t *testing.T, opts ...daemon.Option) *daemon.Daemon {
	t.Helper()
	require.Root(t)
	require.Binary(t, "runc")
	require.Binary(t, "ctr")
	require.Binary(t, "containerd-shim-runc-v2")
	d := daemon.Start(t, opts...)
	d.MustBerth("images", "import", writeArchive(t, t.TempDir(), busybox(t)))
	t.Cleanup(func() {
		removeAllTasks(d)
		checkNoShims(t, d)
	})
	return d
}

// removeAllTasks kills and deletes whatever task a failed test left, so
// no container outlives it.
func removeAllTasks(d *daemon.Daemon) {
	ctx := nsContext("default")
	resp, err := tasksClient(d).List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return
	}
	for _, p := range resp.Tasks {
		tasksClient(d).Kill(ctx, &tasksapi.KillRequest{ContainerID: p.ID, Signal: 9, All: true})
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		tasksClient(d).Wait(wctx, &tasksapi.WaitRequest{ContainerID: p.ID})
		cancel()
		tasksClient(d).Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: p.ID})
	}
}

// tasksClient calls berthd's tasks service in namespace default.
func tasksClient(d *daemon.Daemon) tasksapi.TasksClient { return tasksapi.NewTasksClient(d.Conn()) }

// checkNoShims fails if a shim of d is still running once the test is
// over, and kills it.
func checkNoShims(t *testing.T, d *daemon.Daemon) {
	var left []int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = shimPids(d, ""); len(left) == 0 {
			return
		}
	}
	t.Errorf("shims still running after the test: %v", left)
	for _, p := range left {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// spareID asks shimPids for the spare shims.
const spareID = "<spare>"

// shimPids finds the long-lived shims of d (of container id, or all):
// processes whose arguments name d's address and, when given, the id.
func shimPids(d *daemon.Daemon, id string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "shim-runc-v2") || slices.Contains(args, "start") || slices.Contains(args, "delete") {
			continue
		}
		// A spare serves no container yet (see TestSpareShim).
		if slices.Contains(args, "spare") != (id == spareID) {
			continue
		}
		if !slices.Contains(args, d.Address) || (id != "" && id != spareID && !hasFlag(args, "-id", id)) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

func hasFlag(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

// bundles lists the bundle folders left in d's state.
func bundles(t *testing.T, d *daemon.Daemon) []string {
	t.Helper()
	// A deleted task's bundle goes in the background once its shim has
	// exited, moments after the delete answered.
	var matches []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		matches, err = filepath.Glob(filepath.Join(d.State, "io.containerd.runtime.v2.task", "*", "*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(matches) == 0 {
			break
		}
	}
	return matches
}

// taskStatus returns ctr's view of the tasks: id to status.
func taskStatus(t *testing.T, d *daemon.Daemon) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(d.MustCtr("tasks", "ls"), "\n")[1:] {
		if f := strings.Fields(line); len(f) == 3 {
			out[f[0]] = f[2]
		}
	}
	return out
}

// eventLog collects the events of a `ctr events` process.
type eventLog struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	buf strings.Builder
}

func ctrEvents(t *testing.T, d *daemon.Daemon) *eventLog {
	t.Helper()
	e := &eventLog{cmd: exec.Command(require.Binary(t, "ctr"), "--address", d.Address, "events")}
	out, err := e.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			e.mu.Lock()
			e.buf.WriteString(sc.Text() + "\n")
			e.mu.Unlock()
		}
	}()
	t.Cleanup(func() { e.cmd.Process.Kill(); e.cmd.Wait() })
	// ctr subscribes asynchronously: probe until it sees an event.
	for i := 0; ; i++ {
		d.MustCtr("namespaces", "create", "events-probe")
		d.MustCtr("namespaces", "rm", "events-probe")
		e.mu.Lock()
		seen := strings.Contains(e.buf.String(), "/namespaces/create")
		e.mu.Unlock()
		if seen {
			return e
		}
		if i == 100 {
			t.Fatal("ctr events never showed an event")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *eventLog) waitFor(t *testing.T, re *regexp.Regexp) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		e.mu.Lock()
		ok := re.MatchString(e.buf.String())
		e.mu.Unlock()
		if ok {
			return
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t.Fatalf("no event matching %s; events:\n%s", re, e.buf.String())
}

// TestCtrRunCompat runs containers with Debian's ctr through berthd, with
// berth's shim and with containerd's.
func TestCtrRunCompat(t *testing.T) {
	t.Parallel()
	d := runtimeDaemon(t)
	events := ctrEvents(t, d)
	for i, rt := range shimRuntimes {
		t.Run(rt, func(t *testing.T) {
			id := fmt.Sprintf("rm%d", i)
			r := d.Ctr("run", "--rm", "--runtime", rt, busyboxRef, id, "sh", "-c", "echo out; echo err >&2; exit 3")
			if r.ExitCode != 3 || r.Stdout != "out\n" || !strings.Contains(r.Stderr, "err\n") {
				t.Fatalf("ctr run --rm: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
			}
			events.waitFor(t, regexp.MustCompile(`/tasks/exit \{.*"`+id+`".*"exit_status":3`))
			ctrDetached(t, d, rt, fmt.Sprintf("bg%d", i), events)
			ctrInteractive(t, d, rt, fmt.Sprintf("tty%d", i))
		})
	}
	if left := bundles(t, d); len(left) != 0 {
		t.Errorf("bundles left: %v", left)
	}
	if m := daemon.MountsUnder(d.State); len(m) != 0 {
		t.Errorf("mounts left under the state folder: %v", m)
	}
}

// ctrDetached drives a detached container through ctr's task and
// container commands.
func ctrDetached(t *testing.T, d *daemon.Daemon, rt, id string, events *eventLog) {
	d.MustCtr("run", "-d", "--runtime", rt, busyboxRef, id, "sleep", "300")
	if st := taskStatus(t, d)[id]; st != "RUNNING" {
		t.Fatalf("tasks ls: %s is %q, want RUNNING", id, st)
	}
	if ps := d.MustCtr("tasks", "ps", id); !regexp.MustCompile(`(?m)^\d+\s+-`).MatchString(ps) {
		t.Errorf("tasks ps:\n%s", ps)
	}
	r := d.Ctr("tasks", "exec", "--exec-id", "e1", id, "sh", "-c", "echo in-exec; exit 4")
	if r.ExitCode != 4 || r.Stdout != "in-exec\n" {
		t.Errorf("tasks exec: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	d.MustCtr("tasks", "pause", id)
	if st := taskStatus(t, d)[id]; st != "PAUSED" {
		t.Errorf("after pause: %q", st)
	}
	d.MustCtr("tasks", "resume", id)
	if st := taskStatus(t, d)[id]; st != "RUNNING" {
		t.Errorf("after resume: %q", st)
	}
	if m := d.MustCtr("tasks", "metrics", id); !strings.Contains(m, "memory") {
		t.Errorf("tasks metrics:\n%s", m)
	}
	if ls := d.MustCtr("containers", "ls"); !regexp.MustCompile(id + `\s+` + regexp.QuoteMeta(busyboxRef) + `\s+` + regexp.QuoteMeta(rt)).MatchString(ls) {
		t.Errorf("containers ls:\n%s", ls)
	}
	var info struct {
		Runtime struct{ Name string }
		Spec    struct{ Process struct{ Args []string } }
	}
	if err := json.Unmarshal([]byte(d.MustCtr("containers", "info", id)), &info); err != nil || info.Runtime.Name != rt || !slices.Equal(info.Spec.Process.Args, []string{"sleep", "300"}) {
		t.Errorf("containers info: %+v (%v)", info, err)
	}
	if r := d.Ctr("containers", "rm", id); r.ExitCode == 0 {
		t.Errorf("containers rm of a running container succeeded")
	}
	d.MustCtr("tasks", "kill", "-s", "SIGKILL", id)
	waitStatus(t, d, id, "STOPPED")
	events.waitFor(t, regexp.MustCompile(`/tasks/exit \{.*"`+id+`".*"exit_status":137`))
	d.MustCtr("tasks", "rm", id)
	d.MustCtr("containers", "rm", id)
	events.waitFor(t, regexp.MustCompile(`/tasks/delete \{.*"`+id+`"`))
	if _, ok := taskStatus(t, d)[id]; ok {
		t.Errorf("task %s still listed after rm", id)
	}
}

func waitStatus(t *testing.T, d *daemon.Daemon, id, want string) {
	t.Helper()
	got := ""
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = taskStatus(t, d)[id]; got == want {
			return
		}
	}
	t.Fatalf("task %s is %q, want %q", id, got, want)
}

// ctrInteractive runs `ctr run -t` in a tmux pane: the shell gets a
// terminal of the pane's size, runs commands typed into it, and its exit
// status becomes ctr's.
func ctrInteractive(t *testing.T, d *daemon.Daemon, rt, id string) {
	ctr := require.Binary(t, "ctr")
	interactive(t, id, fmt.Sprintf("%s --address %s run --rm -t --runtime %s %s %s sh", ctr, d.Address, rt, busyboxRef, id))
}

// interactive runs command, which must start an interactive busybox sh
// on a terminal, in a 100x30 tmux pane and checks the shell sees that
// terminal, runs what is typed and passes its exit status through.
func interactive(t *testing.T, name, command string) {
	t.Helper()
	tmux := require.Binary(t, "tmux")
	session := fmt.Sprintf("berth-%d-%s", os.Getpid(), name)
	script := command + "; echo CTR-EXIT=$?; sleep 60"
	if out, err := exec.Command(tmux, "new-session", "-d", "-x", "100", "-y", "30", "-s", session, script).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v: %s", err, out)
	}
	defer exec.Command(tmux, "kill-session", "-t", session).Run()
	pane := func() string {
		out, _ := exec.Command(tmux, "capture-pane", "-p", "-t", session).Output()
		return string(out)
	}
	waitPane := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if strings.Contains(pane(), want) {
				return
			}
		}
		t.Fatalf("pane never showed %q:\n%s", want, pane())
	}
	waitPane("/ #")
	exec.Command(tmux, "send-keys", "-t", session, "echo $((6*7)); stty size; tty", "Enter").Run()
	waitPane("42")
	waitPane("30 100")
	waitPane("/dev/pts/0")
	exec.Command(tmux, "send-keys", "-t", session, "exit 5", "Enter").Run()
	waitPane("CTR-EXIT=5")
}

// TestBerthContainersAndTasks drives the ctr-style berth commands.
func TestBerthContainersAndTasks(t *testing.T) {
	t.Parallel()
	d := runtimeDaemon(t)
	d.MustBerth("containers", "create", "--label", "app=a", "busybox", "c1", "sh", "-c", "echo out; echo err >&2; exit 7")
	r := d.Berth("tasks", "start", "c1")
	if r.ExitCode != 7 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("tasks start: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if out := d.BerthIn("piped\n", "tasks", "start", "c1"); out.ExitCode != 7 {
		t.Errorf("second start: exit %d: %s", out.ExitCode, out.Stderr)
	}
	d.MustBerth("containers", "create", "busybox", "cat", "cat")
	if out := d.BerthIn("through stdin\n", "tasks", "start", "--rm", "cat"); out.ExitCode != 0 || out.Stdout != "through stdin\n" {
		t.Errorf("cat: exit %d, stdout %q, stderr %q", out.ExitCode, out.Stdout, out.Stderr)
	}
	if ls := d.MustBerth("containers", "ls", "-q"); ls != "c1\n" {
		t.Errorf("--rm left containers: %q", ls)
	}
	var info struct {
		ID, Runtime, Snapshotter, SnapshotKey string
		Labels                                map[string]string
	}
	if err := json.Unmarshal([]byte(d.MustBerth("containers", "info", "c1")), &info); err != nil || info.Runtime != "io.berth.runc.v2" || info.SnapshotKey != "c1" || info.Labels["app"] != "a" {
		t.Errorf("containers info: %+v (%v)", info, err)
	}
	d.MustBerth("containers", "label", "c1", "app=", "tier=web")
	if ls := d.MustBerth("containers", "ls", "labels.tier==web", "-q"); ls != "c1\n" {
		t.Errorf("label filter: %q", ls)
	}

	d.MustBerth("containers", "create", "--runtime", "io.containerd.runc.v2", "busybox", "bg", "sh", "-c", "echo started; sleep 300")
	d.MustBerth("tasks", "start", "-d", "bg")
	if ls := d.MustBerth("tasks", "ls"); !regexp.MustCompile(`bg\s+\d+\s+RUNNING`).MatchString(ls) {
		t.Errorf("tasks ls:\n%s", ls)
	}
	if out := d.Berth("tasks", "exec", "bg", "sh", "-c", "echo exec; exit 9"); out.ExitCode != 9 || out.Stdout != "exec\n" {
		t.Errorf("tasks exec: exit %d, stdout %q, stderr %q", out.ExitCode, out.Stdout, out.Stderr)
	}
	d.MustBerth("tasks", "exec", "-d", "--exec-id", "sleeper", "bg", "sleep", "300")
	if ps := d.MustBerth("tasks", "ps", "bg"); !strings.Contains(ps, "sleeper") {
		t.Errorf("tasks ps does not show the exec:\n%s", ps)
	}
	d.MustBerth("tasks", "pause", "bg")
	if ls := d.MustBerth("tasks", "ls", "--format", "{{.Status}}"); ls != "PAUSED\n" {
		t.Errorf("after pause: %q", ls)
	}
	d.MustBerth("tasks", "resume", "bg")
	if m := d.MustBerth("tasks", "metrics", "bg"); !strings.Contains(m, "memory") {
		t.Errorf("metrics:\n%s", m)
	}
	if info := d.MustBerth("info"); !regexp.MustCompile(`Running: 1`).MatchString(info) {
		t.Errorf("berth info does not count the running task:\n%s", info)
	}
	attach := d.BerthCommand("tasks", "attach", "bg")
	attachOut, _ := attach.StdoutPipe()
	if err := attach.Start(); err != nil {
		t.Fatal(err)
	}
	// What the detached task printed waited in its FIFO.
	waitOutput(t, attachOut, "started\n")
	d.MustBerth("tasks", "kill", "--signal", "KILL", "bg")
	if err := attach.Wait(); err == nil || attach.ProcessState.ExitCode() != 137 {
		t.Errorf("attach ended with %v, want exit 137", err)
	}
	if r := d.Berth("containers", "rm", "bg"); r.ExitCode != 0 {
		t.Errorf("containers rm of a stopped container: %s", r.Stderr)
	}
	d.MustBerth("containers", "rm", "c1")

	d.MustBerth("containers", "create", "-t", "busybox", "tty", "sh")
	interactive(t, "berth-tty", fmt.Sprintf("%s --address %s tasks start --rm tty", daemon.Binary(t, "berth"), d.Address))
	if left := bundles(t, d); len(left) != 0 {
		t.Errorf("bundles left: %v", left)
	}
}

// waitOutput reads r until it has produced want.
func waitOutput(t *testing.T, r io.Reader, want string) {
	t.Helper()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 256)
	for len(got) < len(want) {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if string(got) != want {
		t.Errorf("read %q, want %q", got, want)
	}
}

// runDetached starts n busybox containers sleeping, half with each shim.
func runDetached(t *testing.T, d *daemon.Daemon, ids []string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := d.Ctr("run", "-d", "--runtime", shimRuntimes[i%2], busyboxRef, id, "sleep", "600"); r.ExitCode != 0 {
				errs <- fmt.Sprintf("ctr run -d %s: %s", id, r.Stderr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// subscribe streams berthd's events into a channel.
func subscribe(t *testing.T, d *daemon.Daemon, filters ...string) <-chan *types.Envelope {
	t.Helper()
	ctx, cancel := context.WithCancel(nsContext("default"))
	t.Cleanup(cancel)
	stream, err := eventsservice.NewEventsClient(d.Conn()).Subscribe(ctx, &eventsservice.SubscribeRequest{Filters: filters})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *types.Envelope, 1024)
	go func() {
		for {
			env, err := stream.Recv()
			if err != nil {
				return
			}
			ch <- env
		}
	}()
	// Subscribe returns before the server registers the subscriber:
	// probe until an event comes through. Filters may hide the probe's
	// namespace events, so the probe is a task event of a container
	// that does not exist: a forwarded /tasks/oom.
	for i := 0; i < 100; i++ {
		publishProbe(t, d)
		select {
		case env := <-ch:
			if env.Topic == probeTopic {
				return ch
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("the event subscription never showed an event")
	return nil
}

const probeTopic = "/tasks/oom"

// publishProbe publishes a /tasks/oom of container "probe", which tests
// ignore.
func publishProbe(t *testing.T, d *daemon.Daemon) {
	t.Helper()
	ev, err := anypb.New(&eventsapi.TaskOOM{ContainerID: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	ev.TypeUrl = "containerd.events.TaskOOM"
	if _, err := eventsservice.NewEventsClient(d.Conn()).Publish(nsContext("default"), &eventsservice.PublishRequest{Topic: probeTopic, Event: ev}); err != nil {
		t.Fatal(err)
	}
}

// TestRestartKeepsTasks kills berthd with 20 running containers, kills 5
// of them while it is down, and checks after its restart that the 15 still
// run and answer, and that the 5 report exit 137 to Wait and as events.
func TestRestartKeepsTasks(t *testing.T) {
	t.Parallel()
	d := runtimeDaemon(t)
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, fmt.Sprintf("k%02d", i))
	}
	runDetached(t, d, ids)
	pids := map[string]int{}
	for _, id := range ids {
		resp, err := tasksClient(d).Get(nsContext("default"), &tasksapi.GetRequest{ContainerID: id})
		if err != nil {
			t.Fatal(err)
		}
		pids[id] = int(resp.Process.Pid)
	}
	d.Kill()
	killed := ids[:5]
	var stopped []int
	for _, id := range killed {
		if err := syscall.Kill(pids[id], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range killed {
		waitGone(t, pids[id])
		// The shim queued the exit for berthd. Hold it until a
		// subscriber is in place after the restart: the shim retries
		// within a second of berthd's return, possibly before any
		// client could subscribe.
		for _, p := range shimPids(d, id) {
			syscall.Kill(p, syscall.SIGSTOP)
			stopped = append(stopped, p)
		}
	}
	d.Restart()
	ch := subscribe(t, d, `topic=="/tasks/exit"`, `topic=="`+probeTopic+`"`)
	for _, p := range stopped {
		syscall.Kill(p, syscall.SIGCONT)
	}
	exits := map[string]uint32{}
	for timeout := time.After(15 * time.Second); len(exits) < len(killed); {
		select {
		case env := <-ch:
			var ev eventsapi.TaskExit
			if err := proto.Unmarshal(env.Event.Value, &ev); err != nil {
				t.Fatal(err)
			}
			exits[ev.ContainerID] = ev.ExitStatus
		case <-timeout:
			t.Fatalf("exit events after restart: %v, want one for each of %v", exits, killed)
		}
	}
	for _, id := range killed {
		if exits[id] != 137 {
			t.Errorf("exit event of %s: status %d, want 137", id, exits[id])
		}
		w, err := tasksClient(d).Wait(nsContext("default"), &tasksapi.WaitRequest{ContainerID: id})
		if err != nil || w.ExitStatus != 137 {
			t.Errorf("wait %s after restart: %v %v", id, w, err)
		}
	}
	st := taskStatus(t, d)
	for i, id := range ids {
		want := "RUNNING"
		if i < len(killed) {
			want = "STOPPED"
		}
		if st[id] != want {
			t.Errorf("after restart %s is %q, want %s", id, st[id], want)
		}
	}
	for _, id := range ids[5:7] {
		if r := d.Ctr("tasks", "exec", "--exec-id", "after", id, "sh", "-c", "exit 6"); r.ExitCode != 6 {
			t.Errorf("exec in %s after restart: exit %d %s", id, r.ExitCode, r.Stderr)
		}
	}
	waited := make(chan *tasksapi.WaitResponse, 1)
	go func() {
		w, err := tasksClient(d).Wait(nsContext("default"), &tasksapi.WaitRequest{ContainerID: ids[5]})
		if err != nil {
			t.Error(err)
		}
		waited <- w
	}()
	// sleep, the container's init, ignores SIGTERM: SIGKILL it.
	d.MustCtr("tasks", "kill", "-s", "SIGKILL", ids[5])
	if w := <-waited; w == nil || w.ExitStatus != 137 {
		t.Errorf("wait after kill: %v, want 137", w)
	}
	cleanupContainers(t, d, ids)
}

// waitGone waits until process pid is reaped.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			return
		}
	}
	t.Fatalf("process %d still there", pid)
}

// cleanupContainers kills and removes containers through ctr.
func cleanupContainers(t *testing.T, d *daemon.Daemon, ids []string) {
	t.Helper()
	for _, id := range ids {
		d.Ctr("tasks", "kill", "-s", "SIGKILL", id)
	}
	for _, id := range ids {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if d.Ctr("tasks", "rm", id).ExitCode == 0 || !strings.Contains(d.Ctr("tasks", "ls").Stdout, id) {
				break
			}
		}
		d.MustCtr("containers", "rm", id)
	}
	if left := bundles(t, d); len(left) != 0 {
		t.Errorf("bundles left: %v", left)
	}
}

// TestShimKilled kills each kind of shim under a running container: the
// task is reported stopped (137), the container is gone, its bundle and
// mounts are cleaned, and berthd keeps serving.
func TestShimKilled(t *testing.T) {
	t.Parallel()
	d := runtimeDaemon(t)
	ids := []string{"s0", "s1"}
	runDetached(t, d, ids)
	ch := subscribe(t, d, `topic~="^/tasks/"`)
	for _, id := range ids {
		resp, err := tasksClient(d).Get(nsContext("default"), &tasksapi.GetRequest{ContainerID: id})
		if err != nil {
			t.Fatal(err)
		}
		init := int(resp.Process.Pid)
		shims := shimPids(d, id)
		if len(shims) != 1 {
			t.Fatalf("shims of %s: %v", id, shims)
		}
		bundle := filepath.Join(d.State, "io.containerd.runtime.v2.task", "default", id)
		address, err := os.ReadFile(filepath.Join(bundle, "address"))
		if err != nil {
			t.Fatal(err)
		}
		socket := strings.TrimPrefix(strings.TrimSpace(string(address)), "unix://")
		waited := make(chan *tasksapi.WaitResponse, 1)
		go func() {
			w, err := tasksClient(d).Wait(nsContext("default"), &tasksapi.WaitRequest{ContainerID: id})
			if err != nil {
				t.Errorf("wait %s across its shim's death: %v", id, err)
			}
			waited <- w
		}()
		time.Sleep(50 * time.Millisecond) // let Wait reach the shim
		syscall.Kill(shims[0], syscall.SIGKILL)
		if w := <-waited; w == nil || w.ExitStatus != 137 {
			t.Errorf("wait %s: %v, want 137", id, w)
		}
		waitTopic(t, ch, "/tasks/exit", id)
		waitTopic(t, ch, "/tasks/delete", id)
		if st := taskStatus(t, d)[id]; st != "STOPPED" {
			t.Errorf("%s after its shim died: %q", id, st)
		}
		waitGone(t, init)
		if _, err := os.Stat(bundle); !os.IsNotExist(err) {
			t.Errorf("bundle of %s still there: %v", id, err)
		}
		if m := daemon.MountsUnder(bundle); len(m) != 0 {
			t.Errorf("mounts left: %v", m)
		}
		if _, err := os.Stat(socket); !os.IsNotExist(err) {
			t.Errorf("socket %s of the dead shim left: %v", socket, err)
		}
		if r := d.Ctr("run", "--rm", busyboxRef, "after-"+id, "true"); r.ExitCode != 0 {
			t.Errorf("berthd does not serve after the shim died: %s", r.Stderr)
		}
		d.MustCtr("tasks", "rm", id)
		d.MustCtr("containers", "rm", id)
	}
}

func waitTopic(t *testing.T, ch <-chan *types.Envelope, topic, id string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case env := <-ch:
			if env.Topic == topic && strings.Contains(string(env.Event.Value), id) {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", topic, id)
		}
	}
}

// TestRunCyclesLeaveNothing runs 200 containers one after the other and
// 20 at once, and compares berthd's descriptors and goroutines, mounts,
// bundles and shims before and after.
func TestRunCyclesLeaveNothing(t *testing.T) {
	t.Parallel()
	debug := freeAddress(t)
	d := runtimeDaemon(t, daemon.WithConfig(fmt.Sprintf("[debug]\naddress = %q", debug)))
	// One run first, so that lazily created things (clients, caches)
	// exist in the baseline.
	d.MustCtr("run", "--rm", busyboxRef, "warm", "true")
	time.Sleep(200 * time.Millisecond)
	fds, goroutines := countFDs(t, d), countGoroutines(t, debug)

	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("seq%d", i%3)
		if r := d.Ctr("run", "--rm", "--runtime", shimRuntimes[i%2], busyboxRef, id, "true"); r.ExitCode != 0 {
			t.Fatalf("cycle %d: %s", i, r.Stderr)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("par%d", i)
			if r := d.Berth("containers", "create", "busybox", id, "sh", "-c", "exit 2"); r.ExitCode != 0 {
				t.Errorf("create %s: %s", id, r.Stderr)
				return
			}
			if r := d.Berth("tasks", "start", "--rm", id); r.ExitCode != 2 {
				t.Errorf("start %s: exit %d %s", id, r.ExitCode, r.Stderr)
			}
		}()
	}
	wg.Wait()

	checkNoShims(t, d)
	if left := bundles(t, d); len(left) != 0 {
		t.Errorf("bundles left: %v", left)
	}
	if m := daemon.MountsUnder(d.State); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	if ls := d.MustCtr("containers", "ls", "-q"); strings.TrimSpace(ls) != "" {
		t.Errorf("containers left: %s", ls)
	}
	// Connections of exited shims and clients close asynchronously.
	var fdsAfter, goroutinesAfter int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fdsAfter, goroutinesAfter = countFDs(t, d), countGoroutines(t, debug)
		if fdsAfter <= fds && goroutinesAfter <= goroutines {
			break
		}
	}
	if fdsAfter > fds {
		t.Errorf("berthd has %d descriptors after 220 runs, %d before", fdsAfter, fds)
	}
	if goroutinesAfter > goroutines {
		t.Errorf("berthd has %d goroutines after 220 runs, %d before", goroutinesAfter, goroutines)
	}
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func countFDs(t *testing.T, d *daemon.Daemon) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func countGoroutines(t *testing.T, debug string) int {
	t.Helper()
	// No keep-alive: an idle connection would count as a descriptor and
	// goroutines of berthd's.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + debug + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	var n int
	if _, err := fmt.Sscanf(line, "goroutine profile: total %d", &n); err != nil {
		t.Fatalf("goroutine profile: %q: %v", line, err)
	}
	return n
}

// TestBerthdPublish sends events the way shims of containerd's v1
// contract do: `berthd publish` with the event on stdin, over the gRPC
// socket and over the ttrpc one.
func TestBerthdPublish(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	ch := subscribe(t, d, `topic~="^/tasks/"`)
	for i, address := range []string{d.Address, d.Address + ".ttrpc"} {
		id := fmt.Sprintf("published-%d", i)
		ev, err := anypb.New(&eventsapi.TaskExit{ContainerID: id, ExitStatus: 42})
		if err != nil {
			t.Fatal(err)
		}
		ev.TypeUrl = "containerd.events.TaskExit"
		data, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(daemon.Binary(t, "berthd"), "--address", address, "publish", "--topic", "/tasks/exit", "--namespace", "default")
		cmd.Stdin = strings.NewReader(string(data))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("berthd publish to %s: %v: %s", address, err, out)
		}
		waitTopic(t, ch, "/tasks/exit", id)
	}
	cmd := exec.Command(daemon.Binary(t, "berthd"), "--address", d.Address, "publish", "--topic", "no-slash", "--namespace", "default")
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "topic") {
		t.Errorf("bad topic accepted: %v %s", err, out)
	}
}

// TestSpareShim checks the shim berthd keeps started ahead of need: a
// task's shim is the spare it adopted (showing the task's flags, as a
// shim started for it would), a new spare replaces it, and spares end
// with berthd, also when it is killed. With spare_shim = false there is
// none and tasks still run.
func TestSpareShim(t *testing.T) {
	t.Parallel()
	d := runtimeDaemon(t)
	spare := waitSpares(t, d, 1)[0]
	d.MustBerth("containers", "create", "busybox", "sp", "sleep", "60")
	d.MustBerth("tasks", "start", "-d", "sp")
	if got := shimPids(d, "sp"); len(got) != 1 || got[0] != spare {
		t.Errorf("shim of sp: %v, want the spare %d", got, spare)
	}
	next := waitSpares(t, d, 1)[0]
	if next == spare {
		t.Errorf("the adopted spare %d is still counted as a spare", spare)
	}
	d.MustBerth("tasks", "kill", "--signal", "KILL", "sp")
	for deadline := time.Now().Add(10 * time.Second); d.Berth("tasks", "rm", "sp").ExitCode != 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	d.MustBerth("containers", "rm", "sp")

	d.Stop()
	waitSpares(t, d, 0)
	d.Restart()
	waitSpares(t, d, 1)
	d.Kill()
	waitSpares(t, d, 0)

	off := runtimeDaemon(t, daemon.WithConfig("[plugins.\"io.containerd.runtime.v2.task\"]\nspare_shim = false"))
	off.MustBerth("containers", "create", "busybox", "nospare", "true")
	if r := off.Berth("tasks", "start", "--rm", "nospare"); r.ExitCode != 0 {
		t.Errorf("task without spares: exit %d: %s", r.ExitCode, r.Stderr)
	}
	if got := shimPids(off, spareID); len(got) != 0 {
		t.Errorf("spares with spare_shim = false: %v", got)
	}
}

// waitSpares waits until d has n spare shims and returns them.
func waitSpares(t *testing.T, d *daemon.Daemon, n int) []int {
	t.Helper()
	var got []int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = shimPids(d, spareID); len(got) == n {
			return got
		}
	}
	t.Fatalf("spare shims: %v, want %d", got, n)
	return nil
}
