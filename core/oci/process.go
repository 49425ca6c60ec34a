package oci

import (
	"context"
	"maps"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// InitPath is where WithInit mounts the init binary inside the container.
const InitPath = "/sbin/berth-init"

// WithProcessArgs sets the process arguments, replacing any set before.
func WithProcessArgs(args ...string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if len(args) == 0 {
			return invalid("process arguments are empty")
		}
		ensureProcess(s).Args = slices.Clone(args)
		return nil
	}
}

// WithEnv merges env into the process environment: an entry replaces the
// one with the same key, a new key is appended, and a bare "KEY" removes
// KEY (Docker's rule).
func WithEnv(env ...string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		p := ensureProcess(s)
		merged, err := MergeEnv(p.Env, env)
		if err != nil {
			return err
		}
		p.Env = merged
		return nil
	}
}

// MergeEnv returns base with overrides applied by key: "KEY=value"
// replaces or appends, "KEY" alone removes KEY. base is not modified.
func MergeEnv(base, overrides []string) ([]string, error) {
	out := slices.Clone(base)
	index := make(map[string]int, len(out)+len(overrides))
	for i, e := range out {
		index[envKey(e)] = i
	}
	for _, e := range overrides {
		k := envKey(e)
		if k == "" || strings.ContainsRune(e, 0) {
			return nil, invalid("environment entry %q has no variable name or holds a NUL byte", e)
		}
		if i, ok := index[k]; ok {
			out[i] = e
			continue
		}
		index[k] = len(out)
		out = append(out, e)
	}
	// Bare keys mark removals; drop them in one pass.
	return slices.DeleteFunc(out, func(e string) bool { return !strings.Contains(e, "=") }), nil
}

func envKey(e string) string {
	k, _, _ := strings.Cut(e, "=")
	return k
}

// hasEnv reports whether env sets key.
func hasEnv(env []string, key string) bool {
	return slices.ContainsFunc(env, func(e string) bool { return envKey(e) == key && strings.Contains(e, "=") })
}

// setEnvDefault adds key=value to the process environment unless key is
// already set: variables the runtime environment provides (HOSTNAME, TERM)
// yield to ones the image or user set, as in Docker.
func setEnvDefault(p *specs.Process, key, value string) {
	if !hasEnv(p.Env, key) {
		p.Env = append(p.Env, key+"="+value)
	}
}

// WithWorkingDir sets the process working directory, which must be absolute.
func WithWorkingDir(dir string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if !path.IsAbs(dir) {
			return invalid("working directory %q is not an absolute path", dir)
		}
		ensureProcess(s).Cwd = path.Clean(dir)
		return nil
	}
}

// WithTTY gives the process a terminal (and TERM=xterm unless TERM is set).
func WithTTY(tty bool) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		p := ensureProcess(s)
		p.Terminal = tty
		if tty {
			setEnvDefault(p, "TERM", "xterm")
		}
		return nil
	}
}

// WithHostname sets the container's hostname (and HOSTNAME unless set).
func WithHostname(name string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if len(name) > 64 || strings.ContainsAny(name, "/ \t\n\x00") {
			return invalid("hostname %q is longer than 64 bytes or holds a slash, space or NUL", name)
		}
		s.Hostname = name
		if name != "" {
			setEnvDefault(ensureProcess(s), "HOSTNAME", name)
		}
		return nil
	}
}

// WithNoNewPrivileges sets no_new_privs: setuid binaries and file
// capabilities then grant nothing.
func WithNoNewPrivileges(on bool) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		ensureProcess(s).NoNewPrivileges = on
		return nil
	}
}

// WithOOMScoreAdj sets the process' oom_score_adj (-1000 to 1000).
func WithOOMScoreAdj(adj int) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if adj < -1000 || adj > 1000 {
			return invalid("oom score adjustment %d is outside -1000..1000", adj)
		}
		ensureProcess(s).OOMScoreAdj = &adj
		return nil
	}
}

// WithAnnotations adds annotations, replacing ones with the same key.
func WithAnnotations(annotations map[string]string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = make(map[string]string, len(annotations))
		}
		maps.Copy(s.Annotations, annotations)
		return nil
	}
}

// WithInit runs the process under an init (tini, catatonit or berth's
// own) that reaps zombies and forwards signals: hostPath is bind-mounted
// read-only at InitPath and the arguments become [InitPath, "--", args...].
// Docker adds it only when the container has a PID namespace of its own,
// since otherwise there already is an init; so does this option.
func WithInit(hostPath string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if !path.IsAbs(hostPath) {
			return invalid("init binary path %q is not absolute", hostPath)
		}
		p := ensureProcess(s)
		if len(p.Args) == 0 {
			return invalid("init needs the process arguments to be set first")
		}
		if !ownsNamespace(s, specs.PIDNamespace) {
			return nil
		}
		p.Args = append([]string{InitPath, "--"}, p.Args...)
		replaceMount(s, specs.Mount{
			Destination: InitPath,
			Type:        "bind",
			Source:      hostPath,
			Options:     []string{"bind", "ro"},
		})
		return nil
	}
}
