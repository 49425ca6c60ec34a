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

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// v2 is a process's cgroup on a unified host.
type v2 struct {
	dir string
}

func (c v2) path(name string) string {
	return filepath.Join(c.dir, name)
}

// Stats reads the cgroup's interface files; controllers that are not
// enabled leave their part empty.
func (c v2) Stats() (proto.Message, error) {
	if _, err := os.Stat(c.dir); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", c.dir, err)
	}
	m := &v2stats.Metrics{}
	for _, read := range []func(*v2stats.Metrics) error{c.pids, c.cpu, c.memory, c.memoryEvents, c.io, c.hugetlb} {
		if err := orMissing(read(m)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (c v2) pids(m *v2stats.Metrics) error {
	p := &v2stats.PidsStat{}
	var err error
	if p.Current, err = readUint(c.path("pids.current"), 0); err != nil {
		return err
	}
	if p.Limit, err = readUint(c.path("pids.max"), 0); err != nil {
		return err
	}
	m.Pids = p
	return nil
}

func (c v2) cpu(m *v2stats.Metrics) error {
	s := &v2stats.CPUStat{}
	m.CPU = s
	return readKV(c.path("cpu.stat"), map[string]*uint64{
		"usage_usec": &s.UsageUsec, "user_usec": &s.UserUsec, "system_usec": &s.SystemUsec,
		"nr_periods": &s.NrPeriods, "nr_throttled": &s.NrThrottled, "throttled_usec": &s.ThrottledUsec,
		"nr_bursts": &s.NrBursts, "burst_usec": &s.BurstUsec,
	})
}

func (c v2) memory(m *v2stats.Metrics) error {
	s := &v2stats.MemoryStat{}
	if err := readKV(c.path("memory.stat"), map[string]*uint64{
		"anon": &s.Anon, "file": &s.File, "kernel_stack": &s.KernelStack, "slab": &s.Slab, "sock": &s.Sock,
		"shmem": &s.Shmem, "file_mapped": &s.FileMapped, "file_dirty": &s.FileDirty,
		"file_writeback": &s.FileWriteback, "anon_thp": &s.AnonThp, "inactive_anon": &s.InactiveAnon,
		"active_anon": &s.ActiveAnon, "inactive_file": &s.InactiveFile, "active_file": &s.ActiveFile,
		"unevictable": &s.Unevictable, "slab_reclaimable": &s.SlabReclaimable,
		"slab_unreclaimable": &s.SlabUnreclaimable, "pgfault": &s.Pgfault, "pgmajfault": &s.Pgmajfault,
		"workingset_refault": &s.WorkingsetRefault, "workingset_activate": &s.WorkingsetActivate,
		"workingset_nodereclaim": &s.WorkingsetNodereclaim, "pgrefill": &s.Pgrefill, "pgscan": &s.Pgscan,
		"pgsteal": &s.Pgsteal, "pgactivate": &s.Pgactivate, "pgdeactivate": &s.Pgdeactivate,
		"pglazyfree": &s.Pglazyfree, "pglazyfreed": &s.Pglazyfreed, "thp_fault_alloc": &s.ThpFaultAlloc,
		"thp_collapse_alloc": &s.ThpCollapseAlloc,
	}); err != nil {
		return err
	}
	m.Memory = s
	for name, dst := range map[string]*uint64{
		"memory.current": &s.Usage, "memory.max": &s.UsageLimit, "memory.peak": &s.MaxUsage,
		"memory.swap.current": &s.SwapUsage, "memory.swap.max": &s.SwapLimit, "memory.swap.peak": &s.SwapMaxUsage,
	} {
		v, err := readUint(c.path(name), math.MaxUint64)
		if err := orMissing(err); err != nil {
			return err
		}
		*dst = v
	}
	return nil
}

func (c v2) memoryEvents(m *v2stats.Metrics) error {
	e := &v2stats.MemoryEvents{}
	if err := readKV(c.path("memory.events"), map[string]*uint64{
		"low": &e.Low, "high": &e.High, "max": &e.Max, "oom": &e.Oom, "oom_kill": &e.OomKill,
		"oom_group_kill": &e.OomGroupKill,
	}); err != nil {
		return err
	}
	m.MemoryEvents = e
	return nil
}

// io reads io.stat lines: "major:minor rbytes=N wbytes=N rios=N wios=N ...".
func (c v2) io(m *v2stats.Metrics) error {
	f, err := os.Open(c.path("io.stat"))
	if err != nil {
		return err
	}
	defer f.Close()
	s := &v2stats.IOStat{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		maj, min, ok := strings.Cut(fields[0], ":")
		if !ok {
			continue
		}
		e := &v2stats.IOEntry{}
		e.Major, _ = strconv.ParseUint(maj, 10, 64)
		e.Minor, _ = strconv.ParseUint(min, 10, 64)
		for _, kv := range fields[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				e.Rbytes = n
			case "wbytes":
				e.Wbytes = n
			case "rios":
				e.Rios = n
			case "wios":
				e.Wios = n
			}
		}
		s.Usage = append(s.Usage, e)
	}
	m.Io = s
	return sc.Err()
}

func (c v2) hugetlb(m *v2stats.Metrics) error {
	currents, err := filepath.Glob(c.path("hugetlb.*.current"))
	if err != nil {
		return err
	}
	for _, cur := range currents {
		size := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(cur), "hugetlb."), ".current")
		h := &v2stats.HugeTlbStat{Pagesize: size}
		if h.Current, err = readUint(cur, 0); err != nil {
			return err
		}
		if h.Max, err = readUint(c.path("hugetlb."+size+".max"), math.MaxUint64); err != nil {
			return err
		}
		if err := readKV(c.path("hugetlb."+size+".events"), map[string]*uint64{"max": &h.Failcnt}); orMissing(err) != nil {
			return err
		}
		m.Hugetlb = append(m.Hugetlb, h)
	}
	return nil
}

// WatchOOM watches memory.events with inotify; each increase of its
// oom_kill counter is an OOM kill.
func (c v2) WatchOOM() (OOMWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch OOM: inotify: %w", err)
	}
	events := os.NewFile(uintptr(fd), "oom-inotify")
	if _, err := unix.InotifyAddWatch(fd, c.path("memory.events"), unix.IN_MODIFY); err != nil {
		events.Close()
		return nil, fmt.Errorf("watch OOM: watch %s: %w", c.path("memory.events"), err)
	}
	return &v2OOM{c: c, events: events, kills: c.oomKills()}, nil
}

type v2OOM struct {
	c      v2
	events *os.File
	kills  uint64
}

func (w *v2OOM) Run(ctx context.Context, onOOM func()) error {
	defer w.events.Close()
	stop := context.AfterFunc(ctx, func() { w.events.Close() })
	defer stop()
	buf := make([]byte, 4096)
	for {
		n, err := w.events.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("watch OOM: read inotify: %w", err)
		}
		if ignored(buf[:n]) {
			return nil // the cgroup is gone
		}
		now := w.c.oomKills()
		if now > w.kills {
			onOOM()
		}
		w.kills = now
	}
}

func (c v2) oomKills() uint64 {
	var n uint64
	_ = readKV(c.path("memory.events"), map[string]*uint64{"oom_kill": &n})
	return n
}

// ignored reports whether a batch of inotify events says the watch was
// removed, as happens when the cgroup is deleted.
func ignored(b []byte) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		mask := uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24
		nameLen := uint32(b[12]) | uint32(b[13])<<8 | uint32(b[14])<<16 | uint32(b[15])<<24
		if mask&unix.IN_IGNORED != 0 {
			return true
		}
		b = b[min(len(b), unix.SizeofInotifyEvent+int(nameLen)):]
	}
	return false
}
