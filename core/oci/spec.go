// Package oci generates OCI runtime specs (config.json) for containers:
// Docker's and containerd's defaults, and functional options for what
// `berth run` and CRI ask for (image config, user, resources,
// capabilities, mounts, seccomp, privileged mode, ...).
//
// Options apply in order and each sees what earlier ones did, so an option
// that depends on others goes after them:
//
//   - WithImageConfig first; WithProcessArgs, WithEnv, WithUser and
//     WithWorkingDir after it override what the image set.
//   - WithInit after the process arguments and PID namespace are final;
//     WithNetworkSysctlDefaults after the network namespace options.
//   - WithPrivileged after capability options (it grants all of them).
//   - WithDefaultSeccomp last among security options: it tailors the
//     profile to the capabilities then in the spec. WithPrivileged removes
//     the filter; Docker leaves a privileged container unconfined unless
//     a profile is given, and so does RunConfig.
//   - WithHostsFiles after WithReadonlyRootfs (the files follow the rootfs'
//     writability).
//
// RunConfig.SpecOpts puts docker-run style settings in that order.
// Generate sorts mounts so parents precede children and validates the
// result.
package oci

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecOpt changes a spec.
type SpecOpt func(ctx context.Context, s *specs.Spec) error

// Generate returns DefaultSpec(namespace, id) with opts applied, mounts
// sorted and the result validated.
func Generate(ctx context.Context, namespace, id string, opts ...SpecOpt) (*specs.Spec, error) {
	if namespace == "" || id == "" {
		return nil, fmt.Errorf("spec needs a namespace and an id (got %q, %q): %w", namespace, id, errdefs.ErrInvalidArgument)
	}
	s := DefaultSpec(namespace, id)
	if err := ApplyOpts(ctx, s, opts...); err != nil {
		return nil, err
	}
	return s, nil
}

// ApplyOpts applies opts to s in order, then sorts the mounts and
// validates s. s is left partly changed when an option fails.
func ApplyOpts(ctx context.Context, s *specs.Spec, opts ...SpecOpt) error {
	for _, o := range opts {
		if err := o(ctx, s); err != nil {
			return err
		}
	}
	SortMounts(s.Mounts)
	return Validate(s)
}

// invalid returns an ErrInvalidArgument error with a message.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// ensureProcess and ensureLinux create the sections options write into, so
// options also work on a spec that did not come from DefaultSpec.
func ensureProcess(s *specs.Spec) *specs.Process {
	if s.Process == nil {
		s.Process = &specs.Process{Cwd: "/"}
	}
	return s.Process
}

func ensureLinux(s *specs.Spec) *specs.Linux {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	return s.Linux
}

func ensureResources(s *specs.Spec) *specs.LinuxResources {
	l := ensureLinux(s)
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

// Validate checks the parts of s that berth's options produce and that the
// runtime would otherwise reject late or silently misread.
func Validate(s *specs.Spec) error {
	if s.Root == nil || s.Root.Path == "" {
		return invalid("spec has no root path")
	}
	if p := s.Process; p != nil {
		if !path.IsAbs(p.Cwd) {
			return invalid("working directory %q is not absolute", p.Cwd)
		}
		if err := validateRlimits(p.Rlimits); err != nil {
			return err
		}
		if c := p.Capabilities; c != nil {
			for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
				if err := validateCapabilityNames(set); err != nil {
					return err
				}
			}
		}
	}
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Destination) {
			return invalid("mount destination %q is not absolute", m.Destination)
		}
	}
	if s.Linux != nil {
		return validateLinux(s.Linux)
	}
	return nil
}

func validateLinux(l *specs.Linux) error {
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range l.Namespaces {
		if seen[ns.Type] {
			return invalid("namespace %q is listed twice", ns.Type)
		}
		seen[ns.Type] = true
	}
	keys := make([]string, 0, len(l.Sysctl))
	for k := range l.Sysctl {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := validateSysctl(k, seen); err != nil {
			return err
		}
	}
	return nil
}

// SortMounts orders mounts so that a mount comes after every mount whose
// destination is a parent of its own (fewer path components first),
// keeping the given order otherwise. Mounting /a/b before /a would hide it.
func SortMounts(mounts []specs.Mount) {
	slices.SortStableFunc(mounts, func(a, b specs.Mount) int {
		return depth(a.Destination) - depth(b.Destination)
	})
}

func depth(p string) int {
	p = path.Clean("/" + p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}
