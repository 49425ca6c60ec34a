package cgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"

	"github.com/berthd/berth/internal/testutil/require"
)

// testCgroup creates a memory-limited cgroup and returns a function that
// runs a shell command in it.
func testCgroup(t *testing.T, limit int64) (run func(script string) error) {
	t.Helper()
	if os.Getuid() != 0 {
		require.Missing(t, "needs root")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		require.Missing(t, "needs busybox")
	}
	name := fmt.Sprintf("berth-cgtest-%d-%s", os.Getpid(), t.Name())
	var dirs []string
	if Unified() {
		dirs = []string{filepath.Join(Root, name)}
	} else {
		for _, c := range []string{"memory", "pids", "cpu", "cpuacct"} {
			dirs = append(dirs, filepath.Join(Root, c, name))
		}
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		d := d
		t.Cleanup(func() { os.Remove(d) })
	}
	limitFile := filepath.Join(dirs[0], "memory.limit_in_bytes")
	if Unified() {
		limitFile = filepath.Join(dirs[0], "memory.max")
	}
	if err := os.WriteFile(limitFile, []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		t.Fatal(err)
	}
	return func(script string) error {
		// The shell joins the cgroups, then runs the script.
		join := ""
		for _, d := range dirs {
			join += "echo $$ > " + filepath.Join(d, "cgroup.procs") + "; "
		}
		return exec.Command(busybox, "sh", "-c", join+script).Run()
	}
}

func TestStatsOfProcess(t *testing.T) {
	run := testCgroup(t, 64<<20)
	done := make(chan error, 1)
	pidFile := filepath.Join(t.TempDir(), "pid")
	go func() { done <- run("echo $$ > " + pidFile + "; exec busybox sleep 30") }()
	var pid int
	for pid == 0 {
		data, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(string(trimNL(data)))
		time.Sleep(10 * time.Millisecond)
	}
	defer func() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
		<-done
	}()
	cg, err := Load(pid)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	switch m := m.(type) {
	case *v1stats.Metrics:
		if m.Memory.Usage.Limit != 64<<20 || m.Memory.Usage.Usage == 0 {
			t.Fatalf("memory %v", m.Memory.Usage)
		}
		if m.Pids.Current != 1 || m.CPU.Usage.Total == 0 {
			t.Fatalf("pids %v cpu %v", m.Pids, m.CPU.Usage)
		}
	case *v2stats.Metrics:
		if m.Memory.UsageLimit != 64<<20 || m.Memory.Usage == 0 || m.Pids.Current != 1 {
			t.Fatalf("metrics %v", m)
		}
	default:
		t.Fatalf("metrics of type %T", m)
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

func TestWatchOOM(t *testing.T) {
	run := testCgroup(t, 16<<20)
	// Load the cgroup through a process in it, as the shim does.
	pidFile := filepath.Join(t.TempDir(), "pid")
	ready := make(chan error, 1)
	go func() { ready <- run("echo $$ > " + pidFile + "; exec busybox sleep 30") }()
	var pid int
	for pid == 0 {
		data, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(string(trimNL(data)))
		time.Sleep(10 * time.Millisecond)
	}
	cg, err := Load(pid)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := os.FindProcess(pid)
	p.Kill()
	<-ready
	w, err := cg.WatchOOM()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ooms := make(chan struct{}, 4)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func() { ooms <- struct{}{} }) }()
	if err := run("exec busybox dd if=/dev/zero of=/dev/null bs=64M count=1"); err == nil {
		t.Fatal("dd ran past the memory limit")
	}
	select {
	case <-ooms:
	case <-time.After(10 * time.Second):
		t.Fatal("no OOM reported")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
