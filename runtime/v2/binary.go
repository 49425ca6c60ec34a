package v2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Environment of a shim, as containerd sets it.
const (
	envTTRPCAddress   = "TTRPC_ADDRESS"
	envGRPCAddress    = "GRPC_ADDRESS"
	envNamespace      = "NAMESPACE"
	envMaxShimVersion = "MAX_SHIM_VERSION"
)

const (
	// startTimeout bounds a shim's start command: it waits for the
	// long-lived shim to serve, which takes milliseconds.
	startTimeout = 30 * time.Second
	// deleteTimeout bounds a shim's delete command (runc delete, unmount).
	deleteTimeout = 30 * time.Second
)

// BinaryName is the shim binary of a runtime name "<prefix>.<name>.<version>":
// berth's runtimes (io.berth.*) are berth-shim-<name>-<version>, every
// other one containerd-shim-<name>-<version>, as containerd names them.
func BinaryName(runtime string) (string, error) {
	parts := strings.Split(runtime, ".")
	if len(parts) < 3 || slicesHasEmpty(parts) {
		return "", fmt.Errorf("runtime %q is not of the form <prefix>.<name>.<version>: %w", runtime, errdefs.ErrInvalidArgument)
	}
	name, version := parts[len(parts)-2], parts[len(parts)-1]
	if strings.ContainsAny(name+version, "/\\ ") {
		return "", fmt.Errorf("runtime %q: %w", runtime, errdefs.ErrInvalidArgument)
	}
	prefix := "containerd-shim-"
	if strings.HasPrefix(runtime, "io.berth.") {
		prefix = "berth-shim-"
	}
	return prefix + name + "-" + version, nil
}

func slicesHasEmpty(parts []string) bool {
	for _, p := range parts {
		if p == "" {
			return true
		}
	}
	return false
}

// resolveBinary finds the shim binary of runtime: an absolute path as it
// is, an alias from the configuration, else the conventional name looked
// up in the search folders (berthd's own folder first) and then PATH.
func (m *Manager) resolveBinary(runtime string) (string, error) {
	if runtime == "" {
		runtime = m.opts.DefaultRuntime
	}
	name := m.opts.Runtimes[runtime]
	if name == "" {
		if filepath.IsAbs(runtime) {
			name = runtime
		} else {
			var err error
			if name, err = BinaryName(runtime); err != nil {
				return "", err
			}
		}
	}
	if filepath.IsAbs(name) {
		if err := executable(name); err != nil {
			return "", fmt.Errorf("shim of runtime %q: %w", runtime, err)
		}
		return name, nil
	}
	for _, dir := range m.opts.SearchDirs {
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("shim %s of runtime %q is not installed (looked in %s and PATH): %w",
			name, runtime, strings.Join(m.opts.SearchDirs, ", "), errdefs.ErrNotFound)
	}
	return filepath.Abs(p)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%s does not exist: %w", p, errdefs.ErrNotFound)
		}
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file: %w", p, errdefs.ErrInvalidArgument)
	}
	return nil
}

// shimCommand prepares a shim invocation as containerd makes it: the
// bundle as working directory, the daemon's addresses in flags and
// environment, berthd as the publish binary.
func (m *Manager) shimCommand(ctx context.Context, binary, ns, id, bundle string, args ...string) *exec.Cmd {
	full := []string{"-namespace", ns, "-address", m.opts.Address, "-publish-binary", m.self, "-id", id}
	if m.opts.ShimDebug {
		full = append(full, "-debug")
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, binary, full...)
	cmd.Dir = bundle
	cmd.Env = m.shimEnv(envNamespace + "=" + ns)
	// Its own process group: a terminal's signals to berthd's group do not
	// reach the shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	return cmd
}

// shimEnv is the environment of a shim process: berthd's, the daemon's
// addresses, the shim API version, and extra.
func (m *Manager) shimEnv(extra ...string) []string {
	env := append(os.Environ(),
		envTTRPCAddress+"="+m.opts.TTRPCAddress,
		envGRPCAddress+"="+m.opts.Address,
		envMaxShimVersion+"=2",
	)
	return append(env, extra...)
}

// startShim runs the shim's start command and returns the address it
// printed. opts, when set, goes on stdin as a protobuf Any.
func (m *Manager) startShim(ctx context.Context, binary, ns, id, bundle string, opts *anypb.Any) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	defer cancel()
	cmd := m.shimCommand(ctx, binary, ns, id, bundle, "start")
	var stdin []byte
	if opts != nil {
		var err error
		if stdin, err = proto.Marshal(opts); err != nil {
			return "", fmt.Errorf("encode shim options: %w", err)
		}
	}
	// Always a closed stdin: shims read it to the end.
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("start shim %s: %w: %s", filepath.Base(binary), err, strings.TrimSpace(stderr.String()))
	}
	return parseAddress(stdout.Bytes())
}

// parseAddress reads a start command's output: a plain address, or the
// JSON bootstrap parameters newer shims print.
func parseAddress(out []byte) (string, error) {
	out = bytes.TrimSpace(out)
	var params struct {
		Version  int    `json:"version"`
		Address  string `json:"address"`
		Protocol string `json:"protocol"`
	}
	if json.Unmarshal(out, &params) == nil && params.Version >= 2 {
		if params.Protocol != "" && params.Protocol != "ttrpc" {
			return "", fmt.Errorf("shim speaks %q; berthd talks ttrpc to shims: %w", params.Protocol, errdefs.ErrNotImplemented)
		}
		out = []byte(params.Address)
	}
	addr := strings.TrimPrefix(string(out), "unix://")
	if !filepath.IsAbs(addr) {
		return "", fmt.Errorf("shim printed %q, not a unix socket address: %w", out, errdefs.ErrInvalidArgument)
	}
	return addr, nil
}

// Exit is how a process ended.
type Exit struct {
	Pid       uint32
	Status    uint32
	Timestamp time.Time
}

// deleteShim runs the shim's delete command for a bundle whose shim is
// gone: it removes the container from the OCI runtime (killing what is
// left of it) and unmounts the rootfs. It returns the exit the shim
// reports.
func (m *Manager) deleteShim(ctx context.Context, binary, ns, id, bundle string) (*Exit, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	cmd := m.shimCommand(ctx, binary, ns, id, bundle, "-bundle", bundle, "delete")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("shim %s delete: %w: %s", filepath.Base(binary), err, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("run shim %s delete: %w", filepath.Base(binary), err)
	}
	var resp taskapi.DeleteResponse
	if err := proto.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("decode shim delete response: %w", err)
	}
	exit := &Exit{Pid: resp.Pid, Status: resp.ExitStatus, Timestamp: time.Now()}
	if resp.ExitedAt != nil {
		exit.Timestamp = resp.ExitedAt.AsTime()
	}
	return exit, nil
}
