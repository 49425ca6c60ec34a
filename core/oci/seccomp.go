package oci

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthd/berth/core/oci/seccomp"
)

// WithDefaultSeccomp applies berth's default seccomp profile, tailored to
// the capabilities in the spec at this point (a capability-gated call is
// allowed when the capability is in the bounding set), so apply it after
// the capability options.
func WithDefaultSeccomp() SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		var caps []string
		if c := ensureProcess(s).Capabilities; c != nil {
			caps = c.Bounding
		}
		ensureLinux(s).Seccomp = seccomp.DefaultProfile(caps)
		return nil
	}
}

// WithSeccompProfile applies a given profile (docker --security-opt
// seccomp=<file>, parsed by the caller).
func WithSeccompProfile(p *specs.LinuxSeccomp) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if p == nil {
			return invalid("seccomp profile is empty")
		}
		ensureLinux(s).Seccomp = p
		return nil
	}
}

// WithSeccompUnconfined removes any seccomp filter (docker --security-opt
// seccomp=unconfined).
func WithSeccompUnconfined() SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		ensureLinux(s).Seccomp = nil
		return nil
	}
}
