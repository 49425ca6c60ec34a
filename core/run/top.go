package run

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/run/names"
)

// running returns the run of a running container.
func (m *Manager) running(ctx context.Context, ref string) (Record, *runState, error) {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return Record{}, nil, err
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	run := e.run
	e.mu.Unlock()
	if run == nil || run.task == nil {
		return Record{}, nil, fmt.Errorf("container %s is not running: %w", names.Short(r.ID), errdefs.ErrFailedPrecondition)
	}
	return r, run, nil
}

// Top runs ps(1) on the host with psArgs (default -ef) and keeps the
// rows of the container's processes, as docker top does.
func (m *Manager) Top(ctx context.Context, ref string, psArgs []string) ([]string, [][]string, error) {
	_, run, err := m.running(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	pids, err := run.task.Pids(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(psArgs) == 0 {
		psArgs = []string{"-ef"}
	}
	out, err := exec.CommandContext(ctx, "ps", psArgs...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, nil, fmt.Errorf("ps %s: %s: %w", strings.Join(psArgs, " "), msg, errdefs.ErrInvalidArgument)
	}
	return filterPS(out, pids)
}

// filterPS keeps the rows of ps output whose PID column is in pids. The
// last column (the command) may hold spaces.
func filterPS(out []byte, pids []uint32) ([]string, [][]string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	if !sc.Scan() {
		return nil, nil, fmt.Errorf("ps printed nothing: %w", errdefs.ErrInvalidArgument)
	}
	titles := strings.Fields(sc.Text())
	col := slices.Index(titles, "PID")
	if col < 0 {
		return nil, nil, fmt.Errorf("ps output has no PID column (keep pid in -o): %w", errdefs.ErrInvalidArgument)
	}
	var rows [][]string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) <= col {
			continue
		}
		pid, err := strconv.ParseUint(fields[col], 10, 32)
		if err != nil || !slices.Contains(pids, uint32(pid)) {
			continue
		}
		if len(fields) > len(titles) {
			last := strings.Join(fields[len(titles)-1:], " ")
			fields = append(fields[:len(titles)-1], last)
		}
		rows = append(rows, fields)
	}
	return titles, rows, sc.Err()
}

// StatsSample is one container's resource use at one moment.
type StatsSample struct {
	ID, Name string
	Metrics
	// CPUPercent is of one CPU (200 = two busy), over the time since the
	// previous sample; 0 for the first.
	CPUPercent   float64
	NetRx, NetTx uint64
	Read         time.Time
}

// Stats samples the resource use of containers refs (every running one
// when empty) and calls fn with the samples: once after a first interval
// unless stream, else every interval until ctx ends or fn fails.
// Containers that stop drop out of the samples.
func (m *Manager) Stats(ctx context.Context, refs []string, stream bool, interval time.Duration, fn func([]StatsSample) error) error {
	type target struct {
		r    Record
		run  *runState
		prev StatsSample
	}
	var targets []*target
	if len(refs) == 0 {
		all, err := m.List(ctx)
		if err != nil {
			return err
		}
		for _, r := range all {
			if r.Managed && r.State.Running() {
				refs = append(refs, r.ID)
			}
		}
	}
	for _, ref := range refs {
		r, run, err := m.running(ctx, ref)
		if err != nil {
			return err
		}
		targets = append(targets, &target{r: r, run: run})
	}
	memTotal := hostMemory()
	for first := true; ; first = false {
		var samples []StatsSample
		for _, t := range targets {
			s, err := sample(ctx, t.r, t.run, memTotal)
			if err != nil {
				continue // stopped meanwhile
			}
			if !t.prev.Read.IsZero() && s.CPUNanos >= t.prev.CPUNanos {
				if dt := s.Read.Sub(t.prev.Read); dt > 0 {
					s.CPUPercent = float64(s.CPUNanos-t.prev.CPUNanos) / float64(dt.Nanoseconds()) * 100
				}
			}
			t.prev = s
			samples = append(samples, s)
		}
		if !first {
			if err := fn(samples); err != nil {
				return err
			}
			if !stream {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

func sample(ctx context.Context, r Record, run *runState, memTotal uint64) (StatsSample, error) {
	mt, err := run.task.Metrics(ctx)
	if err != nil {
		return StatsSample{}, err
	}
	s := StatsSample{ID: r.ID, Name: r.Config.Name, Metrics: mt, Read: time.Now()}
	if s.MemoryLimit == 0 || s.MemoryLimit > memTotal {
		s.MemoryLimit = memTotal
	}
	s.NetRx, s.NetTx = netIO(run.task.Pid())
	return s, nil
}

// netIO sums the bytes received and sent on the interfaces (but lo) of
// process pid's network namespace.
func netIO(pid uint32) (rx, tx uint64) {
	data, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/net/dev")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n")[2:] {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, _ := strconv.ParseUint(f[0], 10, 64)
		t, _ := strconv.ParseUint(f[8], 10, 64)
		rx, tx = rx+r, tx+t
	}
	return rx, tx
}

// hostMemory is the host's memory in bytes, the limit of a container
// without one.
func hostMemory() uint64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
