package shim_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthd/berth/runtime/shim/spare"
)

// startSpare starts a spare of the shim as berthd does.
func (h *harness) startSpare() *spare.Shim {
	h.t.Helper()
	cmd := exec.Command(shimBinary, append(spare.Args(h.address, "/usr/bin/true"), spare.Action)...)
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+h.events.path, "GRPC_ADDRESS="+h.address, "MAX_SHIM_VERSION=2")
	sh, err := spare.Start(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	return sh
}

func (c *container) adopt(sh *spare.Shim) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sh.Adopt(ctx, spare.Request{Namespace: c.h.ns, ID: c.id, Bundle: c.bundle})
}

// TestSpareAdoption: a spare becomes a container's shim (its address and
// pid files written, its command line a started shim's) and runs it to
// the end; a spare for a container whose group already has a shim says
// so and exits; a dismissed spare exits.
func TestSpareAdoption(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.newContainer("sparea", []string{"sleep", "60"}, nil)
	sh := h.startSpare()
	address, err := a.adopt(sh)
	if err != nil {
		t.Fatal(err)
	}
	a.shim = a.connect(address)
	if a.shim.pid != sh.Pid() {
		t.Fatalf("shim.pid %d, want the spare's %d", a.shim.pid, sh.Pid())
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(sh.Pid()) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if want := []string{"-namespace", h.ns, "-id", a.id, "-address", h.address}; strings.Join(args[1:7], " ") != strings.Join(want, " ") {
		t.Errorf("adopted spare's command line %q, want it to start with %q", args, want)
	}
	a.create("", "", "", false)
	a.start("")

	// b joins a's group: the spare must not serve it.
	b := h.newContainer("spareb", []string{"true"}, func(s *specs.Spec) {
		s.Annotations = map[string]string{"io.containerd.runc.v2.group": a.id}
	})
	other := h.startSpare()
	if _, err := b.adopt(other); !errors.Is(err, spare.ErrInUse) {
		t.Errorf("spare for a group with a shim: %v, want ErrInUse", err)
	}
	waitGone(t, other.Pid())

	idle := h.startSpare()
	idle.Close()
	waitGone(t, idle.Pid())

	kill(t, a, "", 9, false)
	a.wait("")
	a.delete("")
	if _, err := a.shim.task.Shutdown(ctx(t), &taskapi.ShutdownRequest{ID: a.id}); err != nil && !strings.Contains(err.Error(), "closed") {
		t.Fatal(err)
	}
	waitGone(t, a.shim.pid)
	a.shim.client.Close()
}
