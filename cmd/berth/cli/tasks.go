package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "github.com/containerd/cgroups/v3/cgroup1/stats" // metrics types, for decoding
	_ "github.com/containerd/cgroups/v3/cgroup2/stats"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/core/oci"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(tasksCommand(g))
	})
}

func tasksCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tasks",
		Aliases: []string{"task", "t"},
		Short:   "manage containers' tasks (ctr-style)",
		GroupID: "admin",
	}
	cmd.AddCommand(tasksStartCommand(g), tasksLsCommand(g), tasksPsCommand(g), tasksKillCommand(g),
		tasksExecCommand(g), tasksAttachCommand(g), tasksPauseCommand(g, true), tasksPauseCommand(g, false),
		tasksMetricsCommand(g), tasksRmCommand(g))
	return cmd
}

// taskCall dials berthd and runs f with the tasks client.
func taskCall(cmd *cobra.Command, g *globals, f func(ctx context.Context, c *Client, ts tasksapi.TasksClient) error) error {
	c, ctx, cancel, err := g.connect(cmd.Context())
	if err != nil {
		return err
	}
	defer cancel()
	return f(ctx, c, tasksapi.NewTasksClient(c.Conn()))
}

type startOptions struct {
	detach, rm bool
}

func tasksStartCommand(g *globals) *cobra.Command {
	var o startOptions
	cmd := &cobra.Command{
		Use:   "start [flags] ID",
		Short: "start a container's task, attached to its stdio until it exits (exit code passed through)",
		Args:  exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskCall(cmd, g, func(ctx context.Context, c *Client, ts tasksapi.TasksClient) error {
				return startTask(ctx, g, c, args[0], o)
			})
		},
	}
	cmd.Flags().BoolVarP(&o.detach, "detach", "d", false, "start and return; 'tasks attach' reaches its stdio later")
	cmd.Flags().BoolVar(&o.rm, "rm", false, "remove the container (and its snapshot) when the task ends")
	return cmd
}

// startTask creates and starts a container's task with FIFO stdio, like
// ctr: attached, it copies stdio until the task ends, deletes the task and
// returns its exit status as the exit code.
func startTask(ctx context.Context, g *globals, c *Client, id string, o startOptions) error {
	if o.detach && o.rm {
		return usageError("--detach and --rm cannot be combined")
	}
	ct, err := containersapi.NewContainersClient(c.Conn()).Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return err
	}
	rootfs, err := rootfsMounts(ctx, c, ct.Container)
	if err != nil {
		return err
	}
	tty := specTerminal(ct.Container.Spec)
	fifos, err := newFIFOSet(fifoRoot(g.address), id, tty)
	if err != nil {
		return err
	}
	a, err := attachFIFOs(ctx, g, fifos, o.detach)
	if err != nil {
		fifos.remove()
		return err
	}
	ts := tasksapi.NewTasksClient(c.Conn())
	_, err = ts.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: id, Rootfs: rootfs,
		Stdin: fifos.stdin, Stdout: fifos.stdout, Stderr: fifos.stderr, Terminal: tty})
	if err != nil {
		a.close()
		fifos.remove()
		return err
	}
	if o.detach {
		return startDetached(ctx, ts, a, id, "")
	}
	defer fifos.remove()
	p := &process{g: g, ts: ts, id: id, tty: tty, a: a}
	code, err := p.run(ctx)
	if err != nil {
		return err
	}
	if _, err := ts.Delete(context.WithoutCancel(ctx), &tasksapi.DeleteTaskRequest{ContainerID: id}); err != nil {
		return fmt.Errorf("delete task: %w", err)
	}
	if o.rm {
		if err := removeContainer(context.WithoutCancel(ctx), c, id, false); err != nil {
			return err
		}
	}
	return exitCode(code)
}

// attachFIFOs connects the user's stdio to a new process's FIFOs; detached,
// it only opens them, so that the process can start without a reader.
func attachFIFOs(ctx context.Context, g *globals, fifos *fifoSet, detach bool) (*attachment, error) {
	if detach {
		return attach(ctx, *fifos, nil, nil, nil)
	}
	return attach(ctx, *fifos, g.stdin, g.stdout, g.stderr)
}

// startDetached starts a created process (execID "" for the init one) and
// closes the CLI's ends of its FIFOs, leaving it to run on its own.
func startDetached(ctx context.Context, ts tasksapi.TasksClient, a *attachment, id, execID string) error {
	_, err := ts.Start(ctx, &tasksapi.StartRequest{ContainerID: id, ExecID: execID})
	a.close()
	return err
}

func exitCode(code uint32) error {
	if code == 0 {
		return nil
	}
	return &ExitError{Code: int(code)}
}

// specTerminal reports whether the container's spec asks for a terminal.
func specTerminal(spec *anypb.Any) bool {
	var s struct {
		Process *struct {
			Terminal bool `json:"terminal"`
		} `json:"process"`
	}
	if json.Unmarshal(spec.GetValue(), &s) != nil || s.Process == nil {
		return false
	}
	return s.Process.Terminal
}

// process drives one started (or to be started) process: the init process
// (execID "") or an exec, attached to the user's terminal.
type process struct {
	g      *globals
	ts     tasksapi.TasksClient
	id     string
	execID string
	tty    bool
	a      *attachment
}

// run waits for the exit of a created process it starts, forwarding stdin's
// end, window sizes (tty) or signals (no tty), and returns its status once
// its output is drained.
func (p *process) run(ctx context.Context) (uint32, error) {
	defer p.a.close()
	waited := make(chan *tasksapi.WaitResponse, 1)
	waitErr := make(chan error, 1)
	go func() {
		r, err := p.ts.Wait(ctx, &tasksapi.WaitRequest{ContainerID: p.id, ExecID: p.execID})
		if err != nil {
			waitErr <- err
			return
		}
		waited <- r
	}()
	if p.tty {
		restore, err := p.rawTerminal()
		if err != nil {
			return 0, err
		}
		defer restore()
	}
	if _, err := p.ts.Start(ctx, &tasksapi.StartRequest{ContainerID: p.id, ExecID: p.execID}); err != nil {
		return 0, err
	}
	stop := p.forward(ctx)
	defer stop()
	select {
	case r := <-waited:
		p.drain()
		return r.ExitStatus, nil
	case err := <-waitErr:
		return 0, fmt.Errorf("wait for %s: %w", p.name(), err)
	}
}

func (p *process) name() string {
	if p.execID != "" {
		return "exec " + p.execID
	}
	return "task " + p.id
}

// drain waits a little for the output still in the FIFOs: a process's
// children may hold them open after it exited.
func (p *process) drain() {
	done := make(chan struct{})
	go func() { p.a.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// forward relays stdin's end (CloseIO), window size changes and, without
// a terminal, SIGINT/SIGTERM/SIGHUP to the process until stopped.
func (p *process) forward(ctx context.Context) func() {
	sigs := make(chan os.Signal, 8)
	if p.tty {
		signal.Notify(sigs, unix.SIGWINCH)
		p.resize(ctx)
	} else {
		signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	}
	done := make(chan struct{})
	go func() {
		stdinEOF := p.a.stdinEOF
		for {
			select {
			case <-done:
				return
			case <-stdinEOF:
				stdinEOF = nil
				p.ts.CloseIO(ctx, &tasksapi.CloseIORequest{ContainerID: p.id, ExecID: p.execID, Stdin: true})
			case s := <-sigs:
				if s == unix.SIGWINCH {
					p.resize(ctx)
					continue
				}
				p.ts.Kill(ctx, &tasksapi.KillRequest{ContainerID: p.id, ExecID: p.execID, Signal: uint32(s.(unix.Signal))})
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

// rawTerminal puts the user's terminal in raw mode, when stdin is one.
func (p *process) rawTerminal() (func(), error) {
	f, ok := p.g.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}, nil
	}
	state, err := term.MakeRaw(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("set terminal to raw mode: %w", err)
	}
	return func() { term.Restore(int(f.Fd()), state) }, nil
}

// resize gives the process's terminal the size of the user's.
func (p *process) resize(ctx context.Context) {
	f, ok := p.g.stdout.(*os.File)
	if !ok {
		return
	}
	w, h, err := term.GetSize(int(f.Fd()))
	if err != nil || w <= 0 || h <= 0 {
		return
	}
	p.ts.ResizePty(ctx, &tasksapi.ResizePtyRequest{ContainerID: p.id, ExecID: p.execID, Width: uint32(w), Height: uint32(h)})
}

type taskRow struct {
	ID     string `json:"id"`
	Pid    uint32 `json:"pid"`
	Status string `json:"status"`
}

func tasksLsCommand(g *globals) *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls [FILTER]",
		Aliases: []string{"list"},
		Short:   "list tasks (filter e.g. status==running)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskCall(cmd, g, func(ctx context.Context, _ *Client, ts tasksapi.TasksClient) error {
				req := &tasksapi.ListTasksRequest{}
				if len(args) == 1 {
					req.Filter = args[0]
				}
				resp, err := ts.List(ctx, req)
				if err != nil {
					return err
				}
				rows := make([]taskRow, 0, len(resp.Tasks))
				for _, t := range resp.Tasks {
					rows = append(rows, taskRow{ID: t.ID, Pid: t.Pid, Status: t.Status.String()})
				}
				return render(g.stdout, format, rows, []column[taskRow]{
					{"TASK", func(r taskRow) string { return r.ID }},
					{"PID", func(r taskRow) string { return fmt.Sprint(r.Pid) }},
					{"STATUS", func(r taskRow) string { return r.Status }},
				}, quiet)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: table, json or a Go template")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the ids")
	return cmd
}

type pidRow struct {
	Pid    uint32 `json:"pid"`
	ExecID string `json:"exec_id,omitempty"`
}

func tasksPsCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ps ID",
		Short: "list a task's processes (execs show their exec id)",
		Args:  exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskCall(cmd, g, func(ctx context.Context, _ *Client, ts tasksapi.TasksClient) error {
				resp, err := ts.ListPids(ctx, &tasksapi.ListPidsRequest{ContainerID: args[0]})
				if err != nil {
					return err
				}
				rows := make([]pidRow, 0, len(resp.Processes))
				for _, p := range resp.Processes {
					row := pidRow{Pid: p.Pid}
					var d options.ProcessDetails
					if p.Info != nil && p.Info.UnmarshalTo(&d) == nil {
						row.ExecID = d.ExecID
					}
					rows = append(rows, row)
				}
				return render(g.stdout, format, rows, []column[pidRow]{
					{"PID", func(r pidRow) string { return fmt.Sprint(r.Pid) }},
					{"INFO", func(r pidRow) string {
						if r.ExecID == "" {
							return "-"
						}
						return r.ExecID
					}},
				}, false)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: table, json or a Go template")
	return cmd
}

func tasksKillCommand(g *globals) *cobra.Command {
	var sig, execID string
	var all bool
	cmd := &cobra.Command{
		Use:   "kill [flags] ID",
		Short: "signal a task (default SIGTERM)",
		Args:  exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := oci.ParseSignal(sig)
			if err != nil {
				return usageError("--signal: %v", err)
			}
			if all && execID != "" {
				return usageError("--all and --exec-id cannot be combined")
			}
			return taskCall(cmd, g, func(ctx context.Context, _ *Client, ts tasksapi.TasksClient) error {
				_, err := ts.Kill(ctx, &tasksapi.KillRequest{ContainerID: args[0], ExecID: execID, Signal: uint32(s), All: all})
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "SIGTERM", "signal to send (name or number)")
	cmd.Flags().BoolVar(&all, "all", false, "signal every process of the task")
	cmd.Flags().StringVar(&execID, "exec-id", "", "signal this exec process instead")
	return cmd
}

type execOptions struct {
	execID, cwd string
	env         []string
	tty, detach bool
}

func tasksExecCommand(g *globals) *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec [flags] ID COMMAND [ARG...]",
		Short: "run a process in a running task (exit code passed through)",
		Args:  minArgs(2, "ID COMMAND"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskCall(cmd, g, func(ctx context.Context, c *Client, ts tasksapi.TasksClient) error {
				return execProcess(ctx, g, c, args[0], args[1:], o)
			})
		},
	}
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.StringVar(&o.execID, "exec-id", "", "exec id (default: random)")
	fl.StringVar(&o.cwd, "cwd", "", "working directory")
	fl.StringArrayVar(&o.env, "env", nil, "extra environment variable KEY=VALUE")
	fl.BoolVarP(&o.tty, "tty", "t", false, "give the process a terminal")
	fl.BoolVarP(&o.detach, "detach", "d", false, "start and return")
	return cmd
}

// execProcess runs args in the task of id with the container's process
// settings, attached unless detached, and deletes it once it exited.
func execProcess(ctx context.Context, g *globals, c *Client, id string, args []string, o execOptions) error {
	if o.execID == "" {
		var b [8]byte
		rand.Read(b[:])
		o.execID = "exec-" + hex.EncodeToString(b[:])
	}
	ct, err := containersapi.NewContainersClient(c.Conn()).Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return err
	}
	var spec specs.Spec
	if err := json.Unmarshal(ct.Container.Spec.GetValue(), &spec); err != nil || spec.Process == nil {
		return fmt.Errorf("container %q has no usable spec: %w", id, errdefs.ErrFailedPrecondition)
	}
	proc := *spec.Process
	proc.Args, proc.Terminal = args, o.tty
	if o.cwd != "" {
		proc.Cwd = o.cwd
	}
	if proc.Env, err = oci.MergeEnv(proc.Env, o.env); err != nil {
		return usageError("--env: %v", err)
	}
	data, err := json.Marshal(proc)
	if err != nil {
		return err
	}
	fifos, err := newFIFOSet(fifoRoot(g.address), id+"-"+o.execID, o.tty)
	if err != nil {
		return err
	}
	defer fifos.remove()
	a, err := attachFIFOs(ctx, g, fifos, o.detach)
	if err != nil {
		return err
	}
	ts := tasksapi.NewTasksClient(c.Conn())
	_, err = ts.Exec(ctx, &tasksapi.ExecProcessRequest{ContainerID: id, ExecID: o.execID,
		Spec:  &anypb.Any{TypeUrl: processTypeURL, Value: data},
		Stdin: fifos.stdin, Stdout: fifos.stdout, Stderr: fifos.stderr, Terminal: o.tty})
	if err != nil {
		a.close()
		return err
	}
	if o.detach {
		return startDetached(ctx, ts, a, id, o.execID)
	}
	p := &process{g: g, ts: ts, id: id, execID: o.execID, tty: o.tty, a: a}
	code, err := p.run(ctx)
	if err != nil {
		return err
	}
	if _, err := ts.DeleteProcess(context.WithoutCancel(ctx), &tasksapi.DeleteProcessRequest{ContainerID: id, ExecID: o.execID}); err != nil {
		return fmt.Errorf("delete exec %s: %w", o.execID, err)
	}
	return exitCode(code)
}

func tasksAttachCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "attach ID",
		Short: "attach to a running task's stdio (Ctrl-C detaches when it has no terminal)",
		Args:  exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskCall(cmd, g, func(ctx context.Context, c *Client, ts tasksapi.TasksClient) error {
				return attachTask(ctx, g, ts, args[0])
			})
		},
	}
}

// attachTask reopens the FIFOs a task was started with and copies until
// it exits; its exit status becomes the exit code.
func attachTask(ctx context.Context, g *globals, ts tasksapi.TasksClient, id string) error {
	got, err := ts.Get(ctx, &tasksapi.GetRequest{ContainerID: id})
	if err != nil {
		return err
	}
	pr := got.Process
	if pr.Status != tasktypes.Status_RUNNING && pr.Status != tasktypes.Status_PAUSED {
		return fmt.Errorf("task %q is %s: %w", id, strings.ToLower(pr.Status.String()), errdefs.ErrFailedPrecondition)
	}
	if pr.Stdout == "" || strings.Contains(pr.Stdout, "://") {
		return fmt.Errorf("task %q was not started with FIFOs to attach to: %w", id, errdefs.ErrFailedPrecondition)
	}
	a, err := attach(ctx, fifoSet{stdin: pr.Stdin, stdout: pr.Stdout, stderr: pr.Stderr}, g.stdin, g.stdout, g.stderr)
	if err != nil {
		return err
	}
	defer a.close()
	p := &process{g: g, ts: ts, id: id, tty: pr.Terminal, a: a}
	if p.tty {
		restore, err := p.rawTerminal()
		if err != nil {
			return err
		}
		defer restore()
		p.resize(ctx)
	}
	ctx, cancel := signal.NotifyContext(ctx, unix.SIGINT)
	defer cancel()
	r, err := ts.Wait(ctx, &tasksapi.WaitRequest{ContainerID: id})
	if err != nil {
		if ctx.Err() != nil {
			return nil // detached
		}
		return err
	}
	p.drain()
	return exitCode(r.ExitStatus)
}

func tasksPauseCommand(g *globals, pause bool) *cobra.Command {
	use, short := "pause ID", "freeze a task"
	if !pause {
		use, short = "resume ID", "thaw a paused task"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskCall(cmd, g, func(ctx context.Context, _ *Client, ts tasksapi.TasksClient) error {
				var err error
				if pause {
					_, err = ts.Pause(ctx, &tasksapi.PauseTaskRequest{ContainerID: args[0]})
				} else {
					_, err = ts.Resume(ctx, &tasksapi.ResumeTaskRequest{ContainerID: args[0]})
				}
				return err
			})
		},
	}
}

type metricRow struct {
	Metric string `json:"metric"`
	Value  string `json:"value"`
}

func tasksMetricsCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "metrics ID",
		Aliases: []string{"stats"},
		Short:   "show a task's cgroup metrics",
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskCall(cmd, g, func(ctx context.Context, _ *Client, ts tasksapi.TasksClient) error {
				resp, err := ts.Metrics(ctx, &tasksapi.MetricsRequest{Filters: []string{"id==" + args[0]}})
				if err != nil {
					return err
				}
				if len(resp.Metrics) == 0 {
					return fmt.Errorf("no metrics for task %q: %w", args[0], errdefs.ErrNotFound)
				}
				m, err := resp.Metrics[0].Data.UnmarshalNew()
				if err != nil {
					return fmt.Errorf("decode metrics of type %s: %w", resp.Metrics[0].Data.GetTypeUrl(), err)
				}
				if format == "json" {
					data, err := protojson.MarshalOptions{Multiline: true, Indent: "    "}.Marshal(m)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintln(g.stdout, string(data))
					return err
				}
				return render(g.stdout, format, flattenMetrics(m), []column[metricRow]{
					{"METRIC", func(r metricRow) string { return r.Metric }},
					{"VALUE", func(r metricRow) string { return r.Value }},
				}, false)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: table, json or a Go template")
	return cmd
}

// flattenMetrics lists a metrics message's scalar fields as dotted paths
// ("memory.usage.usage"), sorted.
func flattenMetrics(m proto.Message) []metricRow {
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil
	}
	var v any
	if json.Unmarshal(data, &v) != nil {
		return nil
	}
	var rows []metricRow
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s.%d", prefix, i), e)
			}
		default:
			rows = append(rows, metricRow{Metric: prefix, Value: fmt.Sprint(x)})
		}
	}
	walk("", v)
	sort.Slice(rows, func(i, j int) bool { return rows[i].Metric < rows[j].Metric })
	return rows
}

func tasksRmCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"delete", "remove"},
		Short:   "delete stopped tasks (prints nothing; exit statuses show in 'events')",
		Args:    minArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return taskCall(cmd, g, func(ctx context.Context, c *Client, ts tasksapi.TasksClient) error {
				return eachArgQuiet(g, args, func(id string) error {
					return deleteTask(ctx, c, ts, id, force)
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running task first")
	return cmd
}

// deleteTask deletes one task, which must exist, and removes the FIFOs
// the CLI made for it.
func deleteTask(ctx context.Context, c *Client, ts tasksapi.TasksClient, id string, force bool) error {
	got, err := ts.Get(ctx, &tasksapi.GetRequest{ContainerID: id})
	if err != nil {
		return err
	}
	if err := removeTask(ctx, c, id, force); err != nil {
		return err
	}
	// FIFOs made by 'tasks start -d' live in their own folder.
	if dir := filepath.Dir(got.Process.Stdout); filepath.Dir(dir) == fifoRoot(c.address) {
		os.RemoveAll(dir)
	}
	return nil
}
