package shim_test

// The harness plays the daemon's part: it serves the ttrpc events service
// the shim publishes to, prepares bundles from a busybox rootfs (mounted by
// the shim as an overlay), starts the shim with its start command and talks
// to it over ttrpc, as berthd's shim manager will.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/internal/testutil/require"
)

var (
	shimBinary string
	buildErr   error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "b-shimbin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shimBinary = filepath.Join(dir, "berth-shim-runc-v2")
	cmd := exec.Command("go", "build", "-o", shimBinary, "github.com/berthd/berth/cmd/berth-shim-runc-v2")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("build shim: %v\n%s", err, out)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireEnv(t *testing.T, binaries ...string) {
	t.Helper()
	if os.Getuid() != 0 {
		require.Missing(t, "needs root")
	}
	for _, b := range append([]string{"runc", "busybox"}, binaries...) {
		if _, err := exec.LookPath(b); err != nil {
			require.Missing(t, "needs "+b)
		}
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// eventServer is the daemon's ttrpc events service.
type eventServer struct {
	path string

	mu     sync.Mutex
	envs   []*apitypes.Envelope
	notify chan struct{}
	server *ttrpc.Server
}

func (e *eventServer) Forward(ctx context.Context, r *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	e.mu.Lock()
	e.envs = append(e.envs, r.Envelope)
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
	return &emptypb.Empty{}, nil
}

func (e *eventServer) start(t *testing.T) {
	t.Helper()
	os.Remove(e.path)
	l, err := net.Listen("unix", e.path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterTTRPCEventsService(s, e)
	e.mu.Lock()
	e.server = s
	e.mu.Unlock()
	go s.Serve(context.Background(), l)
}

// stop closes the listener and every connection: the daemon is down.
func (e *eventServer) stop() {
	e.mu.Lock()
	s := e.server
	e.server = nil
	e.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

func (e *eventServer) snapshot() []*apitypes.Envelope {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*apitypes.Envelope(nil), e.envs...)
}

// event is one received event, decoded.
type event struct {
	topic string
	msg   proto.Message
}

func decodeEvent(t *testing.T, env *apitypes.Envelope) event {
	t.Helper()
	mt, err := protoregistryFind(env.Event.TypeUrl)
	if err != nil {
		t.Fatalf("event %s: %v", env.Topic, err)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(env.Event.Value, m); err != nil {
		t.Fatalf("event %s: %v", env.Topic, err)
	}
	return event{topic: env.Topic, msg: m}
}

// eventsFor returns the events of container id in the order received.
func (e *eventServer) eventsFor(t *testing.T, id string) []event {
	t.Helper()
	var out []event
	for _, env := range e.snapshot() {
		ev := decodeEvent(t, env)
		if containerID(ev.msg) == id {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent waits until container id has an event with topic and returns
// it.
func (e *eventServer) waitEvent(t *testing.T, id, topic string) event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		for _, ev := range e.eventsFor(t, id) {
			if ev.topic == topic {
				return ev
			}
		}
		select {
		case <-e.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %s event for %s; got %v", topic, id, topics(e.eventsFor(t, id)))
		}
	}
}

func containerID(m proto.Message) string {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("container_id")
	if fd == nil {
		return ""
	}
	return r.Get(fd).String()
}

func protoregistryFind(url string) (protoreflect.MessageType, error) {
	return protoregistry.GlobalTypes.FindMessageByURL(url)
}

func topics(evs []event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.topic)
	}
	return out
}

// harness is one fake daemon with its own state directory.
type harness struct {
	t       *testing.T
	dir     string
	ns      string
	address string
	events  *eventServer
	lower   string
	seq     atomic.Int32
}

func newHarness(t *testing.T, binaries ...string) *harness {
	t.Helper()
	requireEnv(t, binaries...)
	dir, err := os.MkdirTemp("", "b-")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, ns: "shimtest", address: filepath.Join(dir, "d.sock")}
	t.Cleanup(h.cleanup)
	h.events = &eventServer{path: h.address + ".ttrpc", notify: make(chan struct{}, 1)}
	h.events.start(t)
	h.lower = filepath.Join(dir, "lower")
	makeBusyboxRootfs(t, h.lower)
	return h
}

func (h *harness) cleanup() {
	h.events.stop()
	// Whatever a failed test left mounted below the harness directory.
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var points []string
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(f[4], h.dir+"/") {
				points = append(points, f[4])
			}
		}
		for i := len(points) - 1; i >= 0; i-- {
			syscall.Unmount(points[i], syscall.MNT_DETACH)
		}
	}
	os.RemoveAll(h.dir)
}

func makeBusyboxRootfs(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "sleep", "cat", "echo", "seq", "dd", "true", "false", "tty", "stty", "head", "wait", "kill", "ls"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
}

// container is one bundle and the shim serving it.
type container struct {
	h      *harness
	id     string
	bundle string
	spec   *specs.Spec
	shim   *shimConn
	opts   *options.Options
}

// newContainer prepares a bundle for args; edit adjusts the spec.
func (h *harness) newContainer(name string, args []string, edit func(*specs.Spec)) *container {
	t := h.t
	t.Helper()
	id := fmt.Sprintf("%s-%d-%d", name, os.Getpid()%10000, h.seq.Add(1))
	bundle := filepath.Join(h.dir, "bundles", h.ns, id)
	for _, d := range []string{bundle, filepath.Join(h.dir, "snap", id, "upper"), filepath.Join(h.dir, "snap", id, "work")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	spec := testSpec(id, args)
	if edit != nil {
		edit(spec)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &container{h: h, id: id, bundle: bundle, spec: spec,
		opts: &options.Options{Root: filepath.Join(h.dir, "runc")}}
	t.Cleanup(c.cleanup)
	return c
}

func testSpec(id string, args []string) *specs.Spec {
	return &specs.Spec{
		// The oldest version the tested runtimes accept.
		Version: "1.0.2",
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin", "TERM=xterm"},
			Cwd:  "/",
		},
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "shimtest",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/berth-shimtest-" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			},
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
		},
	}
}

func (c *container) rootfsMounts() []*apitypes.Mount {
	snap := filepath.Join(c.h.dir, "snap", c.id)
	return []*apitypes.Mount{{
		Type:   "overlay",
		Source: "overlay",
		Options: []string{
			"lowerdir=" + c.h.lower,
			"upperdir=" + filepath.Join(snap, "upper"),
			"workdir=" + filepath.Join(snap, "work"),
		},
	}}
}

// shimConn is a started shim.
type shimConn struct {
	address string
	pid     int
	client  *ttrpc.Client
	task    taskapi.TTRPCTaskService
}

func (c *container) shimArgs(action string) []string {
	return []string{"-namespace", c.h.ns, "-id", c.id, "-address", c.h.address, "-publish-binary", "/usr/bin/true", action}
}

func (c *container) shimEnv() []string {
	return append(os.Environ(),
		"TTRPC_ADDRESS="+c.h.events.path,
		"GRPC_ADDRESS="+c.h.address,
		"MAX_SHIM_VERSION=2",
		"NAMESPACE="+c.h.ns,
	)
}

// startShim runs the start command, as the daemon does, and connects.
func (c *container) startShim() *shimConn {
	t := c.h.t
	t.Helper()
	cmd := exec.Command(shimBinary, c.shimArgs("start")...)
	cmd.Dir = c.bundle
	cmd.Env = c.shimEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("shim start: %v: %s", err, stderr.String())
	}
	c.shim = c.connect(string(out))
	return c.shim
}

func (c *container) connect(address string) *shimConn {
	t := c.h.t
	t.Helper()
	if !strings.HasPrefix(address, "unix:///") {
		t.Fatalf("shim address %q is not unix:///path", address)
	}
	conn, err := net.Dial("unix", strings.TrimPrefix(address, "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	pidData, err := os.ReadFile(filepath.Join(c.bundle, "shim.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(pidData))
	if err != nil {
		t.Fatalf("shim.pid: %v", err)
	}
	client := ttrpc.NewClient(conn)
	return &shimConn{address: address, pid: pid, client: client, task: taskapi.NewTTRPCTaskClient(client)}
}

func (c *container) optionsAny() *anypb.Any {
	data, err := proto.Marshal(c.opts)
	if err != nil {
		c.h.t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: data}
}

// create sends Create with the overlay rootfs and the given stdio.
func (c *container) create(stdin, stdout, stderr string, terminal bool) uint32 {
	t := c.h.t
	t.Helper()
	resp, err := c.shim.task.Create(ctx(t), &taskapi.CreateTaskRequest{
		ID:       c.id,
		Bundle:   c.bundle,
		Rootfs:   c.rootfsMounts(),
		Terminal: terminal,
		Stdin:    stdin,
		Stdout:   stdout,
		Stderr:   stderr,
		Options:  c.optionsAny(),
	})
	if err != nil {
		t.Fatalf("create %s: %v", c.id, err)
	}
	return resp.Pid
}

func (c *container) start(execID string) uint32 {
	t := c.h.t
	t.Helper()
	resp, err := c.shim.task.Start(ctx(t), &taskapi.StartRequest{ID: c.id, ExecID: execID})
	if err != nil {
		t.Fatalf("start %s %s: %v", c.id, execID, err)
	}
	return resp.Pid
}

func (c *container) wait(execID string) uint32 {
	t := c.h.t
	t.Helper()
	resp, err := c.shim.task.Wait(ctx(t), &taskapi.WaitRequest{ID: c.id, ExecID: execID})
	if err != nil {
		t.Fatalf("wait %s %s: %v", c.id, execID, err)
	}
	return resp.ExitStatus
}

func (c *container) delete(execID string) *taskapi.DeleteResponse {
	t := c.h.t
	t.Helper()
	resp, err := c.shim.task.Delete(ctx(t), &taskapi.DeleteRequest{ID: c.id, ExecID: execID})
	if err != nil {
		t.Fatalf("delete %s %s: %v", c.id, execID, err)
	}
	return resp
}

// shutdown asks the shim to exit and waits until it has.
func (c *container) shutdown() {
	t := c.h.t
	t.Helper()
	// Like containerd, accept the connection closing under the reply.
	if _, err := c.shim.task.Shutdown(ctx(t), &taskapi.ShutdownRequest{ID: c.id}); err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		t.Fatalf("shutdown: %v", err)
	}
	waitGone(t, c.shim.pid)
	c.shim.client.Close()
}

func (c *container) exec(execID string, args []string, terminal bool, stdout string) {
	t := c.h.t
	t.Helper()
	data, err := json.Marshal(&specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.shim.task.Exec(ctx(t), &taskapi.ExecProcessRequest{
		ID: c.id, ExecID: execID, Terminal: terminal, Stdout: stdout,
		Spec: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: data},
	})
	if err != nil {
		t.Fatalf("exec %s: %v", execID, err)
	}
}

// cleanup leaves nothing behind whatever the test did: the shim is
// killed, the delete command removes the container and its rootfs mount.
func (c *container) cleanup() {
	if c.h.t.Failed() {
		if log, err := os.ReadFile(filepath.Join(c.bundle, "shim.log")); err == nil {
			c.h.t.Logf("shim log of %s:\n%s", c.id, log)
		}
	}
	if c.shim != nil {
		c.shim.client.Close()
		if alive(c.shim.pid) {
			syscall.Kill(c.shim.pid, syscall.SIGKILL)
			waitGone(c.h.t, c.shim.pid)
		}
	}
	if _, err := os.Stat(c.bundle); err == nil {
		cmd := exec.Command(shimBinary, c.shimArgs("delete")...)
		cmd.Dir = c.bundle
		cmd.Env = c.shimEnv()
		cmd.Run()
	}
	for _, ctrl := range []string{"", "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "unified"} {
		os.Remove(filepath.Join("/sys/fs/cgroup", ctrl, "berth-shimtest-"+c.id))
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mountedUnder lists mount points below dir.
func mountedUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// mkfifo makes a FIFO in the harness directory.
func (h *harness) mkfifo(name string) string {
	h.t.Helper()
	path := filepath.Join(h.dir, name)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// readAll opens path for reading (waiting for a writer) and collects what
// comes until end of file.
func readAll(path string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			ch <- "open: " + err.Error()
			return
		}
		defer f.Close()
		var b bytes.Buffer
		b.ReadFrom(f)
		ch <- b.String()
	}()
	return ch
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("no output")
		return ""
	}
}
