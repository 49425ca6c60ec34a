// Package cgroup reads a container's resource usage from cgroupfs (v1 and
// v2) into the metrics types of github.com/containerd/cgroups/v3, which is
// what containerd's shim returns from Stats, and watches the cgroup for OOM
// kills.
//
// The files are read here rather than through the cgroups/v3 managers: those
// pull systemd's D-Bus client and an eBPF library into every shim, which
// costs about a megabyte of resident memory per container for code a shim
// that only reads statistics never runs.
package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Root is where cgroupfs is mounted.
const Root = "/sys/fs/cgroup"

// Cgroup is the cgroup of one process, as it was when loaded.
type Cgroup interface {
	// Stats returns *v1stats.Metrics or *v2stats.Metrics of
	// github.com/containerd/cgroups/v3.
	Stats() (proto.Message, error)
	// WatchOOM starts watching the cgroup for OOM kills; events from the
	// moment it returns are reported by the watcher's Run.
	WatchOOM() (OOMWatcher, error)
}

// OOMWatcher reports OOM kills of one cgroup.
type OOMWatcher interface {
	// Run calls onOOM for every OOM kill until the cgroup is removed or ctx
	// is done, and releases the watcher.
	Run(ctx context.Context, onOOM func()) error
}

// Unified reports whether the host runs cgroup v2 only.
func Unified() bool {
	var st unix.Statfs_t
	return unix.Statfs(Root, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// Load returns the cgroup of process pid.
func Load(pid int) (Cgroup, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, fmt.Errorf("read cgroup of process %d: %w", pid, err)
	}
	paths := parseProcCgroup(data)
	if Unified() {
		p, ok := paths[""]
		if !ok {
			return nil, fmt.Errorf("process %d has no cgroup v2 path: %w", pid, errdefs.ErrNotFound)
		}
		return v2{dir: filepath.Join(Root, p)}, nil
	}
	dirs, err := v1Dirs(paths)
	if err != nil {
		return nil, err
	}
	return v1{dirs: dirs}, nil
}

// parseProcCgroup maps each controller of /proc/<pid>/cgroup to its path;
// the v2 hierarchy is under "".
func parseProcCgroup(data []byte) map[string]string {
	paths := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	return paths
}

// v1Dirs finds the directory of each v1 controller of a process from the
// cgroup mounts.
func v1Dirs(paths map[string]string) (map[string]string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return nil, fmt.Errorf("read cgroup mounts: %w", err)
	}
	dirs := map[string]string{}
	for _, m := range mounts {
		for _, opt := range strings.Split(m.VFSOptions, ",") {
			p, ok := paths[opt]
			if !ok {
				continue
			}
			// A mount's root is the part of the hierarchy it shows.
			rel, err := filepath.Rel(m.Root, p)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			dirs[opt] = filepath.Join(m.Mountpoint, rel)
		}
	}
	return dirs, nil
}

// readUint reads a file holding one number; "max" reads as maxValue.
func readUint(path string, maxValue uint64) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := string(bytes.TrimSpace(data))
	if s == "max" {
		return maxValue, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

// readKV reads a "key value" per line file into the fields named in dst;
// other keys are ignored.
func readKV(path string, dst map[string]*uint64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		p, ok := dst[key]
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return fmt.Errorf("parse %s: %s: %w", path, key, err)
		}
		*p = v
	}
	return sc.Err()
}

// orMissing drops errors for files a kernel or configuration may not have;
// statistics from such files are left at zero.
func orMissing(err error) error {
	if err == nil || os.IsNotExist(err) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	return err
}

// AddProcess moves process pid into the cgroup at path (relative to each
// hierarchy's root), in every v1 hierarchy that has it, or in the unified
// hierarchy.
func AddProcess(path string, pid int) error {
	pidText := []byte(strconv.Itoa(pid))
	if Unified() {
		return os.WriteFile(filepath.Join(Root, path, "cgroup.procs"), pidText, 0)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return fmt.Errorf("read cgroup mounts: %w", err)
	}
	added := false
	for _, m := range mounts {
		procs := filepath.Join(m.Mountpoint, path, "cgroup.procs")
		if _, err := os.Stat(procs); err != nil {
			continue
		}
		if err := os.WriteFile(procs, pidText, 0); err != nil {
			return fmt.Errorf("add process %d to %s: %w", pid, procs, err)
		}
		added = true
	}
	if !added {
		return fmt.Errorf("cgroup %s: %w", path, errdefs.ErrNotFound)
	}
	return nil
}
