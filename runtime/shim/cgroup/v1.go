package cgroup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// userHZ is the unit of cpuacct.stat; Linux reports it as 100 on every
// architecture through the ABI.
const userHZ = 100

// v1 is a process's cgroup on a v1 (or hybrid) host: one directory per
// controller.
type v1 struct {
	dirs map[string]string
}

func (c v1) file(controller, name string) (string, bool) {
	dir, ok := c.dirs[controller]
	if !ok {
		return "", false
	}
	return filepath.Join(dir, name), true
}

// Stats reads every controller the process is in; missing controllers and
// files leave their part empty.
func (c v1) Stats() (proto.Message, error) {
	m := &v1stats.Metrics{}
	for _, read := range []func(*v1stats.Metrics) error{c.memory, c.cpu, c.pids, c.blkio, c.hugetlb} {
		if err := orMissing(read(m)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (c v1) memory(m *v1stats.Metrics) error {
	path, ok := c.file("memory", "memory.stat")
	if !ok {
		return nil
	}
	s := &v1stats.MemoryStat{
		Usage: &v1stats.MemoryEntry{}, Swap: &v1stats.MemoryEntry{},
		Kernel: &v1stats.MemoryEntry{}, KernelTCP: &v1stats.MemoryEntry{},
	}
	if err := readKV(path, map[string]*uint64{
		"cache": &s.Cache, "rss": &s.RSS, "rss_huge": &s.RSSHuge, "mapped_file": &s.MappedFile,
		"dirty": &s.Dirty, "writeback": &s.Writeback, "pgpgin": &s.PgPgIn, "pgpgout": &s.PgPgOut,
		"pgfault": &s.PgFault, "pgmajfault": &s.PgMajFault, "inactive_anon": &s.InactiveAnon,
		"active_anon": &s.ActiveAnon, "inactive_file": &s.InactiveFile, "active_file": &s.ActiveFile,
		"unevictable": &s.Unevictable, "hierarchical_memory_limit": &s.HierarchicalMemoryLimit,
		"hierarchical_memsw_limit": &s.HierarchicalSwapLimit, "total_cache": &s.TotalCache,
		"total_rss": &s.TotalRSS, "total_rss_huge": &s.TotalRSSHuge, "total_mapped_file": &s.TotalMappedFile,
		"total_dirty": &s.TotalDirty, "total_writeback": &s.TotalWriteback, "total_pgpgin": &s.TotalPgPgIn,
		"total_pgpgout": &s.TotalPgPgOut, "total_pgfault": &s.TotalPgFault, "total_pgmajfault": &s.TotalPgMajFault,
		"total_inactive_anon": &s.TotalInactiveAnon, "total_active_anon": &s.TotalActiveAnon,
		"total_inactive_file": &s.TotalInactiveFile, "total_active_file": &s.TotalActiveFile,
		"total_unevictable": &s.TotalUnevictable,
	}); err != nil {
		return err
	}
	for prefix, e := range map[string]*v1stats.MemoryEntry{
		"memory.": s.Usage, "memory.memsw.": s.Swap, "memory.kmem.": s.Kernel, "memory.kmem.tcp.": s.KernelTCP,
	} {
		for name, dst := range map[string]*uint64{
			"usage_in_bytes": &e.Usage, "max_usage_in_bytes": &e.Max, "failcnt": &e.Failcnt, "limit_in_bytes": &e.Limit,
		} {
			path, _ := c.file("memory", prefix+name)
			v, err := readUint(path, math.MaxUint64)
			if err := orMissing(err); err != nil {
				return err
			}
			*dst = v
		}
	}
	m.Memory = s
	oom := &v1stats.MemoryOomControl{}
	path, _ = c.file("memory", "memory.oom_control")
	if err := readKV(path, map[string]*uint64{
		"oom_kill_disable": &oom.OomKillDisable, "under_oom": &oom.UnderOom, "oom_kill": &oom.OomKill,
	}); err != nil {
		return err
	}
	m.MemoryOomControl = oom
	return nil
}

func (c v1) cpu(m *v1stats.Metrics) error {
	u := &v1stats.CPUUsage{}
	m.CPU = &v1stats.CPUStat{Usage: u, Throttling: &v1stats.Throttle{}}
	if path, ok := c.file("cpuacct", "cpuacct.usage"); ok {
		v, err := readUint(path, 0)
		if err != nil {
			return err
		}
		u.Total = v
		var user, system uint64
		path, _ = c.file("cpuacct", "cpuacct.stat")
		if err := readKV(path, map[string]*uint64{"user": &user, "system": &system}); err != nil {
			return err
		}
		u.User = user * 1e9 / userHZ
		u.Kernel = system * 1e9 / userHZ
		path, _ = c.file("cpuacct", "cpuacct.usage_percpu")
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(data)) {
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return fmt.Errorf("parse %s: %w", path, err)
			}
			u.PerCPU = append(u.PerCPU, v)
		}
	}
	if path, ok := c.file("cpu", "cpu.stat"); ok {
		t := m.CPU.Throttling
		return readKV(path, map[string]*uint64{
			"nr_periods": &t.Periods, "nr_throttled": &t.ThrottledPeriods, "throttled_time": &t.ThrottledTime,
		})
	}
	return nil
}

func (c v1) pids(m *v1stats.Metrics) error {
	path, ok := c.file("pids", "pids.current")
	if !ok {
		return nil
	}
	p := &v1stats.PidsStat{}
	var err error
	if p.Current, err = readUint(path, 0); err != nil {
		return err
	}
	path, _ = c.file("pids", "pids.max")
	// "max" means no limit, which the metrics report as 0.
	if p.Limit, err = readUint(path, 0); err != nil {
		return err
	}
	m.Pids = p
	return nil
}

func (c v1) blkio(m *v1stats.Metrics) error {
	if _, ok := c.dirs["blkio"]; !ok {
		return nil
	}
	devices, err := blockDevices()
	if err != nil {
		return err
	}
	b := &v1stats.BlkIOStat{}
	m.Blkio = b
	recursive := []struct {
		name string
		dst  *[]*v1stats.BlkIOEntry
	}{
		{"blkio.sectors_recursive", &b.SectorsRecursive},
		{"blkio.io_service_bytes_recursive", &b.IoServiceBytesRecursive},
		{"blkio.io_serviced_recursive", &b.IoServicedRecursive},
		{"blkio.io_queued_recursive", &b.IoQueuedRecursive},
		{"blkio.io_service_time_recursive", &b.IoServiceTimeRecursive},
		{"blkio.io_wait_time_recursive", &b.IoWaitTimeRecursive},
		{"blkio.io_merged_recursive", &b.IoMergedRecursive},
		{"blkio.time_recursive", &b.IoTimeRecursive},
	}
	n := 0
	for _, r := range recursive {
		path, _ := c.file("blkio", r.name)
		if err := orMissing(readBlkio(path, devices, r.dst)); err != nil {
			return err
		}
		n += len(*r.dst)
	}
	if n > 0 {
		return nil
	}
	// Without the CFQ scheduler only the throttling counters exist.
	for name, dst := range map[string]*[]*v1stats.BlkIOEntry{
		"blkio.throttle.io_service_bytes": &b.IoServiceBytesRecursive,
		"blkio.throttle.io_serviced":      &b.IoServicedRecursive,
	} {
		path, _ := c.file("blkio", name)
		if err := orMissing(readBlkio(path, devices, dst)); err != nil {
			return err
		}
	}
	return nil
}

// readBlkio reads "major:minor [op] value" lines; "Total" lines are skipped.
func readBlkio(path string, devices map[[2]uint64]string, dst *[]*v1stats.BlkIOEntry) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] == "Total" {
			continue
		}
		maj, min, ok := strings.Cut(fields[0], ":")
		if !ok {
			continue
		}
		e := &v1stats.BlkIOEntry{}
		if e.Major, err = strconv.ParseUint(maj, 10, 64); err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		if e.Minor, err = strconv.ParseUint(min, 10, 64); err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		value := fields[1]
		if len(fields) == 3 {
			e.Op, value = fields[1], fields[2]
		}
		if e.Value, err = strconv.ParseUint(value, 10, 64); err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		e.Device = devices[[2]uint64{e.Major, e.Minor}]
		*dst = append(*dst, e)
	}
	return sc.Err()
}

// blockDevices maps major:minor to /dev/<name> from /proc/partitions.
func blockDevices() (map[[2]uint64]string, error) {
	f, err := os.Open("/proc/partitions")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	devices := map[[2]uint64]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 4 {
			continue
		}
		maj, err1 := strconv.ParseUint(fields[0], 10, 64)
		min, err2 := strconv.ParseUint(fields[1], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		devices[[2]uint64{maj, min}] = "/dev/" + fields[3]
	}
	return devices, sc.Err()
}

func (c v1) hugetlb(m *v1stats.Metrics) error {
	dir, ok := c.dirs["hugetlb"]
	if !ok {
		return nil
	}
	usages, err := filepath.Glob(filepath.Join(dir, "hugetlb.*.usage_in_bytes"))
	if err != nil {
		return err
	}
	for _, usage := range usages {
		size := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(usage), "hugetlb."), ".usage_in_bytes")
		h := &v1stats.HugetlbStat{Pagesize: size}
		for name, dst := range map[string]*uint64{"usage_in_bytes": &h.Usage, "max_usage_in_bytes": &h.Max, "failcnt": &h.Failcnt} {
			v, err := readUint(filepath.Join(dir, "hugetlb."+size+"."+name), 0)
			if err != nil {
				return err
			}
			*dst = v
		}
		m.Hugetlb = append(m.Hugetlb, h)
	}
	return nil
}

// WatchOOM registers an eventfd for memory.oom_control through
// cgroup.event_control. The kernel signals it when the cgroup runs out of
// memory (before the OOM killer has picked its victim, so counters are not
// updated yet) and when the cgroup is removed, whose directory is gone by
// then.
func (c v1) WatchOOM() (OOMWatcher, error) {
	dir, ok := c.dirs["memory"]
	if !ok {
		return nil, fmt.Errorf("watch OOM: no memory cgroup: %w", errdefs.ErrNotFound)
	}
	control, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil, fmt.Errorf("watch OOM: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		control.Close()
		return nil, fmt.Errorf("watch OOM: eventfd: %w", err)
	}
	events := os.NewFile(uintptr(efd), "oom-eventfd")
	reg := fmt.Sprintf("%d %d", efd, control.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
		events.Close()
		control.Close()
		return nil, fmt.Errorf("watch OOM: register eventfd: %w", err)
	}
	return &v1OOM{dir: dir, events: events, control: control}, nil
}

type v1OOM struct {
	dir     string
	events  *os.File
	control *os.File
}

func (w *v1OOM) Run(ctx context.Context, onOOM func()) error {
	defer w.events.Close()
	defer w.control.Close()
	stop := context.AfterFunc(ctx, func() { w.events.Close() })
	defer stop()
	buf := make([]byte, 8)
	for {
		if _, err := w.events.Read(buf); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("watch OOM: read eventfd: %w", err)
		}
		if _, err := os.Stat(filepath.Join(w.dir, "memory.oom_control")); err != nil {
			return nil // the cgroup is gone
		}
		onOOM()
	}
}
