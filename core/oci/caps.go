package oci

import (
	"bufio"
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// capabilityNames lists Linux capabilities by number.
var capabilityNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
	"CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

var capabilityNumbers = func() map[string]int {
	m := make(map[string]int, len(capabilityNames))
	for i, n := range capabilityNames {
		m[n] = i
	}
	return m
}()

// allCapabilities is the magic word of --cap-add/--cap-drop.
const allCapabilities = "ALL"

// KnownCapabilities returns every capability name berth knows, in number
// order.
func KnownCapabilities() []string { return slices.Clone(capabilityNames) }

// NormalizeCapabilities upper-cases names and adds the CAP_ prefix where
// missing ("net_admin" → "CAP_NET_ADMIN"); "ALL" passes through. An unknown
// name is an ErrInvalidArgument naming it.
func NormalizeCapabilities(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		c := strings.ToUpper(strings.TrimSpace(n))
		if c == allCapabilities {
			out = append(out, c)
			continue
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if _, ok := capabilityNumbers[c]; !ok {
			return nil, invalid("unknown capability %q", n)
		}
		out = append(out, c)
	}
	return out, nil
}

func validateCapabilityNames(names []string) error {
	for _, n := range names {
		if _, ok := capabilityNumbers[n]; !ok {
			return invalid("unknown capability %q", n)
		}
	}
	return nil
}

// sortCapabilities orders capability names by number and drops duplicates.
func sortCapabilities(caps []string) []string {
	slices.SortFunc(caps, func(a, b string) int { return capabilityNumbers[a] - capabilityNumbers[b] })
	return slices.Compact(caps)
}

// CurrentCapabilities returns the capabilities in this process' effective
// set: the most a container started by it can be given, which is what
// "ALL" and privileged mode grant. (A runtime asked for a capability its
// caller lacks fails to start the container.)
func CurrentCapabilities() []string { return slices.Clone(currentCapabilities()) }

var currentCapabilities = sync.OnceValue(func() []string {
	mask, err := readCapEff("/proc/self/status")
	if err != nil {
		return nil
	}
	var caps []string
	for i, n := range capabilityNames {
		if mask&(1<<uint(i)) != 0 {
			caps = append(caps, n)
		}
	}
	return caps
})

func readCapEff(statusPath string) (uint64, error) {
	f, err := os.Open(statusPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, invalid("%s has no CapEff line", statusPath)
}

// ApplyCapabilityChanges applies --cap-add and --cap-drop to base with
// Docker's rules: adding ALL grants every current capability except the
// dropped ones; dropping ALL keeps only the added ones; otherwise the
// dropped are removed from base and the added appended.
func ApplyCapabilityChanges(base, add, drop []string) ([]string, error) {
	adds, err := NormalizeCapabilities(add)
	if err != nil {
		return nil, err
	}
	drops, err := NormalizeCapabilities(drop)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case slices.Contains(adds, allCapabilities):
		for _, c := range currentCapabilities() {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
	case slices.Contains(drops, allCapabilities):
		caps = adds
	default:
		for _, c := range base {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
		caps = append(caps, adds...)
	}
	return sortCapabilities(slices.Clone(caps)), nil
}

// WithCapabilities applies --cap-add/--cap-drop (names with or without
// CAP_, any case, or ALL) to the capabilities already in the spec.
func WithCapabilities(add, drop []string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		var base []string
		if c := ensureProcess(s).Capabilities; c != nil {
			base = c.Bounding
		}
		caps, err := ApplyCapabilityChanges(base, add, drop)
		if err != nil {
			return err
		}
		setCapabilities(s, caps)
		return nil
	}
}

// WithCapabilityList sets exactly caps as the process capabilities.
func WithCapabilityList(caps ...string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		norm, err := NormalizeCapabilities(caps)
		if err != nil {
			return err
		}
		if slices.Contains(norm, allCapabilities) {
			norm = currentCapabilities()
		}
		setCapabilities(s, sortCapabilities(slices.Clone(norm)))
		return nil
	}
}

// setCapabilities makes caps the bounding, effective and permitted sets.
// The inheritable set stays empty (an inheritable capability would pass
// through exec of a file with matching file capabilities, CVE-2022-24769).
func setCapabilities(s *specs.Spec, caps []string) {
	p := ensureProcess(s)
	if p.Capabilities == nil {
		p.Capabilities = &specs.LinuxCapabilities{}
	}
	p.Capabilities.Bounding = caps
	p.Capabilities.Effective = slices.Clone(caps)
	p.Capabilities.Permitted = slices.Clone(caps)
	p.Capabilities.Inheritable = nil
}
