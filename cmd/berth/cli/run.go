package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/core/run"
	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(runCommand(g), createCommand(g))
	})
}

// runFlags are the settings of `berth create` and `berth run`.
type runFlags struct {
	name, workdir, user, entrypoint, hostname, memory, memorySwap, cpus string
	restart, runtime, snapshotter, platform, stopSignal, shmSize, pull  string
	cpusetCpus                                                          string
	env, envFiles, labels, capAdd, capDrop, groupAdd, sysctls           []string
	ulimits, logOpts                                                    []string
	interactive, tty, readOnly, privileged, init, rm                    bool
	pidsLimit, cpuShares                                                int64
	stopTimeout                                                         int
	// entrypointSet tells --entrypoint "" (clear it) from no flag.
	entrypointSet bool
	// stdinOnce closes the container's stdin when the client's input ends
	// (an attached run -i).
	stdinOnce bool
	net       netFlags
	mounts    mountFlags
}

func (f *runFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.name, "name", "", "container name (default: adjective_noun)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (KEY alone: taken from this shell)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "file of environment variables")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user[:group] to run as, by name or id")
	fl.StringArrayVar(&f.groupAdd, "group-add", nil, "additional group")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "replace the image's entrypoint (\"\" clears it)")
	fl.StringVar(&f.hostname, "hostname", "", "container host name (default: the short id)")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open")
	fl.BoolVarP(&f.tty, "tty", "t", false, "give the container a terminal")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit (e.g. 256m, 1g)")
	fl.StringVar(&f.memorySwap, "memory-swap", "", "memory plus swap limit (-1: unlimited swap)")
	fl.StringVar(&f.cpus, "cpus", "", "CPUs (e.g. 1.5)")
	fl.Int64VarP(&f.cpuShares, "cpu-shares", "c", 0, "relative CPU weight")
	fl.StringVar(&f.cpusetCpus, "cpuset-cpus", "", "CPUs to run on (0-3, 0,1)")
	fl.Int64Var(&f.pidsLimit, "pids-limit", 0, "process limit (-1: unlimited)")
	fl.StringVar(&f.shmSize, "shm-size", "", "size of /dev/shm")
	fl.StringArrayVar(&f.capAdd, "cap-add", nil, "add a capability (ALL for every one)")
	fl.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a capability (ALL for every one)")
	fl.BoolVar(&f.privileged, "privileged", false, "give the container every capability and device")
	fl.BoolVar(&f.init, "init", false, "run an init inside the container that reaps zombies and forwards signals")
	fl.StringVar(&f.restart, "restart", "no", "restart policy: no, on-failure[:max-retries], always, unless-stopped")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "label KEY=VALUE")
	fl.StringVar(&f.runtime, "runtime", "", "runtime (default: berthd's)")
	fl.StringVar(&f.snapshotter, "snapshotter", "", "snapshotter (default: berthd's)")
	fl.StringVar(&f.platform, "platform", "", "image platform, e.g. linux/arm64")
	fl.StringVar(&f.stopSignal, "stop-signal", "", "signal that stops the container (default: the image's, else SIGTERM)")
	fl.IntVar(&f.stopTimeout, "stop-timeout", -1, "seconds between the stop signal and SIGKILL (default 10)")
	fl.StringArrayVar(&f.sysctls, "sysctl", nil, "namespaced kernel parameter KEY=VALUE")
	fl.StringArrayVar(&f.ulimits, "ulimit", nil, "resource limit name=soft[:hard]")
	fl.StringArrayVar(&f.logOpts, "log-opt", nil, "log option: max-size=SIZE, max-file=N")
	fl.StringVar(&f.pull, "pull", "missing", "pull the image: missing, always or never")
	f.net.register(fl)
	f.mounts.register(fl)
}

// config turns the flags into the API's container config.
func (f *runFlags) config(image string, args []string) (*containersapi.Config, error) {
	full, err := normalizeImage(image)
	if err != nil {
		return nil, err
	}
	cfg := &containersapi.Config{
		Image: full, Cmd: args, WorkingDir: f.workdir, User: f.user, GroupAdd: f.groupAdd,
		Hostname: f.hostname, Tty: f.tty, OpenStdin: f.interactive, StdinOnce: f.stdinOnce, ReadOnly: f.readOnly,
		PidsLimit: f.pidsLimit, CpuShares: f.cpuShares, CpusetCpus: f.cpusetCpus,
		CapAdd: f.capAdd, CapDrop: f.capDrop, Privileged: f.privileged, Init: f.init,
		Runtime: f.runtime, Snapshotter: f.snapshotter, Platform: f.platform, StopSignal: f.stopSignal,
		StopTimeout: int32(f.stopTimeout), Sysctls: f.sysctls, Ulimits: f.ulimits, AutoRemove: f.rm,
	}
	if f.entrypointSet {
		cfg.Entrypoint, cfg.EntrypointSet = []string{f.entrypoint}, true
	}
	if cfg.Env, err = f.environment(); err != nil {
		return nil, err
	}
	if cfg.Labels, err = parseLabels(f.labels); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		flag, value string
		dst         *int64
	}{{"--memory", f.memory, &cfg.Memory}, {"--shm-size", f.shmSize, &cfg.ShmSize}} {
		if s.value == "" {
			continue
		}
		if *s.dst, err = oci.ParseSize(s.value); err != nil {
			return nil, usageError("invalid value %q for %s: %v", s.value, s.flag, cleanErr(err))
		}
	}
	if f.memorySwap == "-1" {
		cfg.MemorySwap = -1
	} else if f.memorySwap != "" {
		if cfg.MemorySwap, err = oci.ParseSize(f.memorySwap); err != nil {
			return nil, usageError("invalid value %q for --memory-swap: %v", f.memorySwap, cleanErr(err))
		}
	}
	if f.cpus != "" {
		if cfg.NanoCpus, err = oci.ParseCPUs(f.cpus); err != nil {
			return nil, usageError("invalid value %q for --cpus: %v", f.cpus, cleanErr(err))
		}
	}
	policy, err := run.ParseRestartPolicy(f.restart)
	if err != nil {
		return nil, usageError("invalid value %q for --restart: %v", f.restart, cleanErr(err))
	}
	cfg.RestartPolicy = &containersapi.RestartPolicy{Name: policy.Name, MaximumRetryCount: int32(policy.MaximumRetryCount)}
	if f.rm && policy.Name != run.RestartNo {
		return nil, usageError("conflicting options: --restart %s and --rm", f.restart)
	}
	if cfg.Log, err = logConfig(f.logOpts); err != nil {
		return nil, err
	}
	if f.stopSignal != "" {
		if _, err := oci.ParseSignal(f.stopSignal); err != nil {
			return nil, usageError("invalid value %q for --stop-signal: %v", f.stopSignal, cleanErr(err))
		}
	}
	for _, u := range f.ulimits {
		if _, err := oci.ParseUlimit(u); err != nil {
			return nil, usageError("invalid value %q for --ulimit: %v", u, cleanErr(err))
		}
	}
	switch f.pull {
	case "missing", "always", "never":
	default:
		return nil, usageError("invalid value %q for --pull: use missing, always or never", f.pull)
	}
	if err := f.mounts.apply(cfg); err != nil {
		return nil, err
	}
	if err := f.net.apply(cfg, f.hostname); err != nil {
		return nil, err
	}
	return cfg, nil
}

// cleanErr drops the errdefs suffix ("invalid argument") from a message.
func cleanErr(err error) string {
	msg := err.Error()
	for _, suffix := range []string{": invalid argument", ": not found"} {
		msg = strings.TrimSuffix(msg, suffix)
	}
	return msg
}

// environment merges --env-file files and -e values, in that order.
func (f *runFlags) environment() ([]string, error) {
	var env []string
	for _, name := range f.envFiles {
		vars, err := oci.ReadEnvFile(name, os.LookupEnv)
		if err != nil {
			return nil, usageError("--env-file %s: %v", name, cleanErr(err))
		}
		env = append(env, vars...)
	}
	for _, e := range f.env {
		if strings.HasPrefix(e, "=") || e == "" {
			return nil, usageError("invalid value %q for --env: no variable name", e)
		}
		if !strings.Contains(e, "=") {
			// Docker's rule: a bare name passes this shell's value, if any.
			if v, ok := os.LookupEnv(e); ok {
				env = append(env, e+"="+v)
			}
			continue
		}
		env = append(env, e)
	}
	return env, nil
}

func logConfig(opts []string) (*containersapi.LogConfig, error) {
	l := &containersapi.LogConfig{}
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		switch {
		case !ok:
			return nil, usageError("invalid value %q for --log-opt: want key=value", o)
		case k == "max-size":
			n, err := oci.ParseSize(v)
			if err != nil || n <= 0 {
				return nil, usageError("invalid value %q for --log-opt max-size: want a size such as 10m", v)
			}
			l.MaxSize = n
		case k == "max-file":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, usageError("invalid value %q for --log-opt max-file: want a number >= 1", v)
			}
			l.MaxFile = int32(n)
		default:
			return nil, usageError("unknown --log-opt %q: use max-size or max-file", k)
		}
	}
	return l, nil
}

func createCommand(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:     "create [flags] IMAGE [COMMAND [ARG...]]",
		Short:   "create a container without starting it",
		GroupID: "containers",
		Args:    minArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.setEntrypointFlag(cmd)
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := createFromFlags(ctx, c, g, &f, args)
			if err != nil {
				return runError(err)
			}
			fmt.Fprintln(g.stdout, resp.Id)
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	f.register(cmd.Flags())
	cmd.Flags().BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	return cmd
}

// setEntrypointFlag records whether --entrypoint was given (even empty).
func (f *runFlags) setEntrypointFlag(cmd *cobra.Command) {
	f.entrypointSet = cmd.Flags().Changed("entrypoint")
}

// createFromFlags pulls the image when needed and creates the container.
func createFromFlags(ctx context.Context, c *Client, g *globals, f *runFlags, args []string) (*containersapi.CreateResponse, error) {
	cfg, err := f.config(args[0], args[1:])
	if err != nil {
		return nil, err
	}
	if f.name != "" && !validName(f.name) {
		return nil, usageError("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least two characters", f.name)
	}
	f.net.printWarnings(g.stderr)
	po := PullOptions{Snapshotter: f.snapshotter, Progress: g.stderr, TTY: stderrTTY(g)}
	if f.platform != "" {
		po.Platforms = []string{f.platform}
	}
	switch f.pull {
	case "always":
		if _, _, err := PullImage(ctx, c, args[0], po); err != nil {
			return nil, err
		}
	case "missing":
		if _, err := EnsureImage(ctx, c, args[0], po); err != nil {
			return nil, fmt.Errorf("image %s not found locally, and pulling it failed: %w", args[0], err)
		}
	}
	resp, err := containersClient(c).Create(ctx, &containersapi.CreateRequest{Name: f.name, Config: cfg})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// validName is the container name rule, checked before anything is sent.
func validName(name string) bool {
	if len(name) < 2 || len(name) > 128 {
		return false
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != '_' && c != '.' && c != '-')) {
			return false
		}
	}
	return true
}

// runError gives errors of create and run docker's exit code 125.
func runError(err error) error {
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	return &ExitError{Code: 125, Err: err}
}

func runCommand(g *globals) *cobra.Command {
	var f runFlags
	var detach, sigProxy bool
	cmd := &cobra.Command{
		Use:     "run [flags] IMAGE [COMMAND [ARG...]]",
		Short:   "create and start a container (in the foreground unless -d)",
		GroupID: "containers",
		Args:    minArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.setEntrypointFlag(cmd)
			if f.tty && f.interactive && !detach && !isTerminal(g.stdin) {
				return usageError("the input device is not a TTY: drop -t, or run berth from a terminal")
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return runError(err)
			}
			defer cancel()
			return runContainer(ctx, c, g, &f, args, detach, sigProxy)
		},
	}
	cmd.Flags().SetInterspersed(false)
	f.register(cmd.Flags())
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background and print the container id")
	cmd.Flags().BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "forward signals to the container (without a terminal)")
	return cmd
}

// isTerminal reports whether r is a terminal.
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func runContainer(ctx context.Context, c *Client, g *globals, f *runFlags, args []string, detach, sigProxy bool) error {
	f.stdinOnce = f.interactive && !detach
	resp, err := createFromFlags(ctx, c, g, f, args)
	if err != nil {
		return runError(containerError(err))
	}
	api := containersClient(c)
	if detach {
		if err := startOrExplain(ctx, c, resp.Id, f.rm); err != nil {
			return err
		}
		fmt.Fprintln(g.stdout, resp.Id)
		return nil
	}
	// Attach first: everything the container writes from its start on
	// reaches the terminal.
	s, err := openAttach(ctx, c, resp.Id, streamOptions{stdin: f.interactive, tty: f.tty, sigProxy: sigProxy}, g)
	if err != nil {
		if f.rm {
			_, _ = api.Remove(context.WithoutCancel(ctx), &containersapi.RemoveRequest{Id: resp.Id, Force: true})
		}
		return runError(err)
	}
	if err := startOrExplain(ctx, c, resp.Id, f.rm); err != nil {
		s.close()
		return err
	}
	code, err := s.run(ctx)
	if err != nil {
		return runError(err)
	}
	return containerExit(code)
}

// startOrExplain starts a container; when it cannot, the error carries
// the exit code docker gives (126/127 for a command that cannot run, 125
// otherwise) and an auto-remove container is removed.
func startOrExplain(ctx context.Context, c *Client, id string, autoRemove bool) error {
	api := containersClient(c)
	_, err := api.Start(ctx, &containersapi.StartRequest{Id: id})
	if err == nil {
		return nil
	}
	code := 125
	if info, ierr := inspectContainer(ctx, c, id); ierr == nil {
		if ec := int(info.State.GetExitCode()); ec == 126 || ec == 127 {
			code = ec
		}
	}
	if autoRemove {
		_, _ = api.Remove(context.WithoutCancel(ctx), &containersapi.RemoveRequest{Id: id, Force: true})
	}
	return &ExitError{Code: code, Err: containerError(err)}
}
