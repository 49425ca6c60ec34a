package oci

import (
	"context"
	"path"
	"slices"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ImageOverrides are the docker run settings that take precedence over an
// image's config.
type ImageOverrides struct {
	// Entrypoint replaces the image's entrypoint when EntrypointSet, and
	// then the image's Cmd is dropped too. Empty or [""] means no
	// entrypoint (docker --entrypoint "").
	Entrypoint    []string
	EntrypointSet bool
	// Args replace the image's Cmd when not empty (the arguments after the
	// image name).
	Args []string
	// Env is merged over the image's Env by key.
	Env []string
	// WorkingDir replaces the image's WorkingDir when set; it must be
	// absolute.
	WorkingDir string
	// User replaces the image's User when set.
	User string
}

// ResolveCommand returns the process arguments docker run would use:
// the entrypoint followed by the command, with the overrides applied. No
// resulting argument is an ErrInvalidArgument.
func ResolveCommand(img ocispec.ImageConfig, o ImageOverrides) ([]string, error) {
	entrypoint, cmd := img.Entrypoint, img.Cmd
	if o.EntrypointSet {
		entrypoint, cmd = o.Entrypoint, nil
		if len(entrypoint) == 1 && entrypoint[0] == "" {
			entrypoint = nil
		}
	}
	if len(o.Args) > 0 {
		cmd = o.Args
	}
	args := append(slices.Clone(entrypoint), cmd...)
	if len(args) == 0 {
		return nil, invalid("no command specified: the image has no entrypoint or cmd and none was given")
	}
	return args, nil
}

// WithImageConfig applies an image's config with the docker run
// overrides: process arguments (ResolveCommand), environment (default
// PATH, then the image's, then the user's, each overriding by key),
// working directory (user's, else image's, else "/") and user (user's,
// else image's, else root), the user resolved against the rootfs at the
// host path rootfs (see ResolveUser).
func WithImageConfig(rootfs string, img ocispec.ImageConfig, o ImageOverrides) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		args, err := ResolveCommand(img, o)
		if err != nil {
			return err
		}
		p := ensureProcess(s)
		env, err := MergeEnv(p.Env, img.Env)
		if err != nil {
			return err
		}
		if env, err = MergeEnv(env, o.Env); err != nil {
			return err
		}
		cwd, err := imageWorkingDir(img.WorkingDir, o.WorkingDir)
		if err != nil {
			return err
		}
		user := o.User
		if user == "" {
			user = img.User
		}
		u, err := ResolveUser(rootfs, user)
		if err != nil {
			return err
		}
		p.Args, p.Env, p.Cwd, p.User = args, env, cwd, u
		return nil
	}
}

// imageWorkingDir picks the working directory. A relative one in an image
// config is taken from "/" (runtimes need an absolute cwd); a relative
// one the user gave is an error.
func imageWorkingDir(image, override string) (string, error) {
	if override != "" {
		if !path.IsAbs(override) {
			return "", invalid("working directory %q is not an absolute path", override)
		}
		return path.Clean(override), nil
	}
	if image == "" {
		return "/", nil
	}
	return path.Join("/", image), nil
}

// ParseSignal parses a signal as a name with or without SIG ("SIGTERM",
// "term", "SIGRTMIN+3") or a number ("15").
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > sigRTMax {
			return 0, invalid("signal %q is out of range 1..%d", s, sigRTMax)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig, ok := parseRealtimeSignal(name); ok {
		return sig, nil
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, invalid("unknown signal %q", s)
}

// Realtime signals as user space numbers them: glibc keeps 32 and 33 for
// itself, so SIGRTMIN is 34.
const (
	sigRTMin = 34
	sigRTMax = 64
)

// parseRealtimeSignal reads SIGRTMIN, SIGRTMIN+n, SIGRTMAX, SIGRTMAX-n.
func parseRealtimeSignal(name string) (unix.Signal, bool) {
	base, sign, rest := 0, 1, ""
	switch {
	case strings.HasPrefix(name, "SIGRTMIN"):
		base, rest = sigRTMin, strings.TrimPrefix(name, "SIGRTMIN")
		if rest != "" && rest[0] != '+' {
			return 0, false
		}
	case strings.HasPrefix(name, "SIGRTMAX"):
		base, sign, rest = sigRTMax, -1, strings.TrimPrefix(name, "SIGRTMAX")
		if rest != "" && rest[0] != '-' {
			return 0, false
		}
	default:
		return 0, false
	}
	off := 0
	if rest != "" {
		n, err := strconv.Atoi(rest[1:])
		if err != nil || n < 0 {
			return 0, false
		}
		off = n
	}
	sig := base + sign*off
	if sig < sigRTMin || sig > sigRTMax {
		return 0, false
	}
	return unix.Signal(sig), true
}

// StopSignal returns the signal that stops the container: override if
// set, else the image's StopSignal, else SIGTERM.
func StopSignal(img ocispec.ImageConfig, override string) (unix.Signal, error) {
	switch {
	case override != "":
		return ParseSignal(override)
	case img.StopSignal != "":
		return ParseSignal(img.StopSignal)
	}
	return unix.SIGTERM, nil
}
