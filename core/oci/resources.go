package oci

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	// MinMemory is the smallest memory limit accepted, as in Docker: less
	// does not leave room for the runtime to start the process.
	MinMemory = 6 << 20
	// cpuPeriod is the CFS period --cpus translates into: 100ms.
	cpuPeriod = 100000
	// minNanoCPUs is 0.01 CPU: a quota below 1ms per period is refused by
	// the kernel.
	minNanoCPUs = 1e7
)

// WithMemory limits memory to limit bytes (0: no limit) and memory plus
// swap to swap bytes with Docker's meaning: 0 means twice the memory limit,
// -1 unlimited swap, otherwise at least limit. On a host without swap
// accounting the swap limit is left out, as Docker does.
func WithMemory(limit, swap int64) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		switch {
		case limit < 0:
			return invalid("memory limit %d is negative", limit)
		case limit > 0 && limit < MinMemory:
			return invalid("memory limit %d is below the minimum of %d bytes (6MiB)", limit, MinMemory)
		case swap < -1:
			return invalid("memory+swap limit %d is invalid (use -1 for unlimited)", swap)
		case limit == 0 && swap > 0:
			return invalid("memory+swap limit %d needs a memory limit", swap)
		case swap > 0 && swap < limit:
			return invalid("memory+swap limit %d is below the memory limit %d", swap, limit)
		case limit == 0:
			return nil
		}
		r := ensureResources(s)
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		r.Memory.Limit = &limit
		if !swapAccounting() {
			if swap != 0 {
				slog.Warn("host has no swap accounting; memory+swap limit ignored", "swap", swap)
			}
			return nil
		}
		if swap == 0 {
			swap = 2 * limit
		}
		r.Memory.Swap = &swap
		return nil
	}
}

// swapAccounting reports whether the host's memory cgroup can limit swap.
var swapAccounting = sync.OnceValue(func() bool {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		own := ownCgroupV2()
		if own == "/" || own == "" {
			// The root cgroup has no swap file; assume the kernel default.
			return true
		}
		_, err := os.Stat(path.Join("/sys/fs/cgroup", own, "memory.swap.max"))
		return err == nil
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
})

func ownCgroupV2() string {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p
		}
	}
	return ""
}

// WithCPUs limits CPU time to nanoCPUs/1e9 CPUs (docker --cpus; see
// ParseCPUs) as a CFS quota per 100ms period; 0 means no limit.
func WithCPUs(nanoCPUs int64) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if nanoCPUs == 0 {
			return nil
		}
		n := int64(runtime.NumCPU())
		if nanoCPUs < minNanoCPUs || nanoCPUs > n*1e9 {
			return invalid("cpus %s is outside the range 0.01 to %d (the CPUs available)", formatNanoCPUs(nanoCPUs), n)
		}
		c := ensureCPU(s)
		period := uint64(cpuPeriod)
		quota := nanoCPUs * cpuPeriod / 1e9
		c.Period, c.Quota = &period, &quota
		return nil
	}
}

func formatNanoCPUs(n int64) string {
	return strconv.FormatFloat(float64(n)/1e9, 'f', -1, 64)
}

func ensureCPU(s *specs.Spec) *specs.LinuxCPU {
	r := ensureResources(s)
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

// WithCPUShares sets the relative CPU weight (docker --cpu-shares, 2 to
// 262144; 0 leaves the default).
func WithCPUShares(shares uint64) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if shares == 0 {
			return nil
		}
		if shares < 2 || shares > 262144 {
			return invalid("cpu shares %d is outside 2..262144", shares)
		}
		ensureCPU(s).Shares = &shares
		return nil
	}
}

// WithCPUSet pins the container to CPUs and memory nodes given as lists
// like "0-3,6" (docker --cpuset-cpus, --cpuset-mems); empty leaves a part
// alone.
func WithCPUSet(cpus, mems string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		for _, v := range []struct{ what, list string }{{"cpuset cpus", cpus}, {"cpuset mems", mems}} {
			if v.list != "" && !validIDList(v.list) {
				return invalid("%s %q is not a list like 0-3,6", v.what, v.list)
			}
		}
		if cpus == "" && mems == "" {
			return nil
		}
		c := ensureCPU(s)
		if cpus != "" {
			c.Cpus = cpus
		}
		if mems != "" {
			c.Mems = mems
		}
		return nil
	}
}

// validIDList checks a cpuset list: comma-separated numbers or ascending
// ranges.
func validIDList(list string) bool {
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return false
		}
		if !isRange {
			continue
		}
		b, err := strconv.ParseUint(hi, 10, 16)
		if err != nil || b < a {
			return false
		}
	}
	return true
}

// WithPidsLimit limits the number of processes (docker --pids-limit);
// 0 or -1 means unlimited.
func WithPidsLimit(limit int64) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		switch {
		case limit < -1:
			return invalid("pids limit %d is invalid (use -1 for unlimited)", limit)
		case limit <= 0:
			ensureResources(s).Pids = nil
		default:
			ensureResources(s).Pids = &specs.LinuxPids{Limit: &limit}
		}
		return nil
	}
}

// WithCgroupsPath sets the cgroup path for the cgroupfs driver: an
// absolute path below the cgroup mount, e.g. "/berth/<namespace>/<id>".
func WithCgroupsPath(p string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" || strings.Contains(p, ":") {
			return invalid("cgroups path %q is not a clean absolute path", p)
		}
		ensureLinux(s).CgroupsPath = p
		return nil
	}
}

// WithSystemdCgroup sets the cgroup path in the systemd driver's
// "slice:prefix:name" form; the runtime then creates the unit
// "<prefix>-<name>.scope" in slice ("" means system.slice). The runtime
// must be run with its systemd-cgroup flag.
func WithSystemdCgroup(slice, prefix, name string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if slice != "" && (!strings.HasSuffix(slice, ".slice") || strings.ContainsAny(slice, "/:")) {
			return invalid("systemd slice %q must be a name ending in .slice", slice)
		}
		for _, part := range []string{prefix, name} {
			if part == "" || strings.ContainsAny(part, "/: ") {
				return invalid("systemd cgroup prefix and name (%q, %q) must be non-empty, without '/', ':' or spaces", prefix, name)
			}
		}
		ensureLinux(s).CgroupsPath = slice + ":" + prefix + ":" + name
		return nil
	}
}
