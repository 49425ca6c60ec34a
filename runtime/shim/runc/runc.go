// Package runc drives an OCI runtime binary with runc's command line (runc,
// crun). Each call runs the binary once; when a reaper is set, the binary is
// started through it so the shim's SIGCHLD loop never steals its exit
// status.
package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/runtime/shim/reaper"
)

// DefaultBinary is the runtime used when none is named.
const DefaultBinary = "runc"

// Runtime is one OCI runtime binary with its global options.
type Runtime struct {
	// Binary is the runtime executable, looked up in PATH if not absolute.
	Binary string
	// Root is the runtime's state directory (--root).
	Root string
	// WorkDir holds the runtime's JSON log (log.json) and the process specs
	// handed to exec; the shim uses the bundle.
	WorkDir string
	// SystemdCgroup makes the runtime manage cgroups through systemd.
	SystemdCgroup bool
	// Reaper, when set, starts and waits for every call; it must be set in a
	// process that reaps its children with a SIGCHLD loop.
	Reaper *reaper.Reaper
}

// IO is the standard streams handed to a created or exec'd process; a nil
// stream is /dev/null.
type IO struct {
	Stdin, Stdout, Stderr *os.File
}

// CreateOpts are the options of Create.
type CreateOpts struct {
	PidFile       string
	ConsoleSocket string
	NoPivot       bool
	NoNewKeyring  bool
	IO            IO
}

// ExecOpts are the options of Exec.
type ExecOpts struct {
	PidFile       string
	ConsoleSocket string
	IO            IO
}

// LogPath is the runtime's JSON log file.
func (r *Runtime) LogPath() string {
	return filepath.Join(r.WorkDir, "log.json")
}

func (r *Runtime) binary() string {
	if r.Binary == "" {
		return DefaultBinary
	}
	return r.Binary
}

func (r *Runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	global := []string{"--root", r.Root, "--log", r.LogPath(), "--log-format", "json"}
	if r.SystemdCgroup {
		global = append(global, "--systemd-cgroup")
	}
	cmd := exec.CommandContext(ctx, r.binary(), append(global, args...)...)
	// If the shim dies in the middle of a call, the runtime must not linger.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs cmd to its end and returns an error naming the operation and the
// runtime's own message when it fails: the error lines the runtime logged
// during this call, else what it printed on stderr, else its exit status.
func (r *Runtime) run(op string, cmd *exec.Cmd, stderr *bytes.Buffer) error {
	offset := fileSize(r.LogPath())
	var err error
	if r.Reaper != nil {
		err = r.Reaper.RunCommand(cmd)
	} else {
		err = cmd.Run()
	}
	if err == nil {
		return nil
	}
	msg := lastLoggedError(r.LogPath(), offset)
	if msg == "" && stderr != nil {
		msg = strings.TrimSpace(stderr.String())
	}
	if msg == "" {
		msg = err.Error()
	}
	msg = fmt.Sprintf("%s %s: %s", r.binary(), op, msg)
	if op == "create" || op == "exec" {
		// The message is about the user's process or bundle; it is not a
		// statement about the container's existence.
		return errors.New(msg)
	}
	return classify(msg)
}

// output runs cmd and returns its standard output.
func (r *Runtime) output(op string, cmd *exec.Cmd) ([]byte, error) {
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	if err := r.run(op, cmd, &errOut); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// classify wraps the runtime's message with the errdefs class it means.
func classify(msg string) error {
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "container not running"),
		strings.Contains(lower, "no such process"),
		strings.Contains(lower, "process already finished"):
		return fmt.Errorf("%s: process already finished: %w", msg, errdefs.ErrNotFound)
	case strings.Contains(lower, "does not exist"),
		strings.Contains(lower, "not found"):
		return fmt.Errorf("%s: %w", msg, errdefs.ErrNotFound)
	case strings.Contains(lower, "already exists"):
		return fmt.Errorf("%s: %w", msg, errdefs.ErrAlreadyExists)
	}
	return errors.New(msg)
}

// lastLoggedError returns the message of the last error-level line a
// runtime appended to its JSON log after offset, or "" if there is none.
func lastLoggedError(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	// A runtime's log of one failed call is short; bound what is read.
	data, err := io.ReadAll(io.LimitReader(io.NewSectionReader(f, offset, 1<<62), 1<<20))
	if err != nil {
		return ""
	}
	var msg string
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var line struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if err := dec.Decode(&line); err != nil {
			return msg
		}
		if line.Level == "error" {
			msg = strings.TrimSpace(line.Msg)
		}
	}
}

func (o IO) set(cmd *exec.Cmd) {
	// Assign only non-nil files: a typed nil *os.File in an io.Writer field
	// would not be treated as /dev/null.
	if o.Stdin != nil {
		cmd.Stdin = o.Stdin
	}
	if o.Stdout != nil {
		cmd.Stdout = o.Stdout
	}
	if o.Stderr != nil {
		cmd.Stderr = o.Stderr
	}
}

// Create creates container id from bundle without starting its process.
func (r *Runtime) Create(ctx context.Context, id, bundle string, o CreateOpts) error {
	args := []string{"create", "--bundle", bundle, "--pid-file", o.PidFile}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	if o.NoPivot {
		args = append(args, "--no-pivot")
	}
	if o.NoNewKeyring {
		args = append(args, "--no-new-keyring")
	}
	cmd := r.command(ctx, append(args, id)...)
	o.IO.set(cmd)
	return r.run("create", cmd, nil)
}

// Start starts the process of a created container.
func (r *Runtime) Start(ctx context.Context, id string) error {
	_, err := r.output("start", r.command(ctx, "start", id))
	return err
}

// Exec runs the process described by spec (a JSON OCI process) as an
// extra process in container id and returns once it runs (the runtime
// detaches from it).
func (r *Runtime) Exec(ctx context.Context, id string, spec []byte, o ExecOpts) error {
	f, err := os.CreateTemp(r.WorkDir, ".exec-*.json")
	if err != nil {
		return fmt.Errorf("write exec process spec: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(spec)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write exec process spec: %w", werr)
	}
	args := []string{"exec", "--detach", "--process", f.Name(), "--pid-file", o.PidFile}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	cmd := r.command(ctx, append(args, id)...)
	o.IO.set(cmd)
	return r.run("exec", cmd, nil)
}

// Kill sends sig to the container's init process, or to all its processes.
func (r *Runtime) Kill(ctx context.Context, id string, sig int, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.output("kill", r.command(ctx, append(args, id, strconv.Itoa(sig))...))
	return err
}

// Delete removes the container's runtime state; force kills it first if it
// still runs.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.output("delete", r.command(ctx, append(args, id)...))
	return err
}

// Pause freezes every process of the container.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	_, err := r.output("pause", r.command(ctx, "pause", id))
	return err
}

// Resume thaws a paused container.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	_, err := r.output("resume", r.command(ctx, "resume", id))
	return err
}

// Ps lists the pids of the container's processes.
func (r *Runtime) Ps(ctx context.Context, id string) ([]int, error) {
	out, err := r.output("ps", r.command(ctx, "ps", "--format", "json", id))
	if err != nil {
		return nil, err
	}
	var pids []int
	if err := json.Unmarshal(out, &pids); err != nil {
		return nil, fmt.Errorf("%s ps: decode pid list %q: %w", r.binary(), out, err)
	}
	return pids, nil
}

// Update applies new resource limits, given as a JSON LinuxResources
// document, to a created or running container.
func (r *Runtime) Update(ctx context.Context, id string, resources []byte) error {
	cmd := r.command(ctx, "update", "--resources", "-", id)
	cmd.Stdin = bytes.NewReader(resources)
	_, err := r.output("update", cmd)
	return err
}

// State is the part of the runtime's state output the shim uses.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
}

// State returns the runtime's view of container id.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) {
	out, err := r.output("state", r.command(ctx, "state", id))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("%s state: decode %q: %w", r.binary(), out, err)
	}
	return &s, nil
}
