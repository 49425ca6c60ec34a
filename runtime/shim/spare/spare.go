// Package spare is how berthd keeps a shim ready before a task needs it.
//
// Starting a shim the contract's way costs two executions of the shim
// binary (its start command, then the long-lived shim) on the path of
// every task create. berthd instead starts one spare shim of its own shim
// binary ahead of time, as `<shim> -address A -publish-binary B spare`,
// with one end of a unix socket pair as fd 3. The spare waits there for a
// single Request naming the namespace, container id and bundle, then does
// what the start command would have done (listen on the group's socket,
// write the address and shim.pid files, join the shim cgroup), answers
// with its address and serves the task API like any other shim. When the
// group's socket is already served, it answers InUse and exits; berthd
// then runs the start command, which joins the running shim. When berthd
// closes its end first (it stops or restarts), the spare exits.
package spare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Action is the shim's command-line action for a spare.
const Action = "spare"

// ControlFD is the spare's end of the control socket.
const ControlFD = 3

// idPad is the length of the placeholders a spare's command line holds
// for the namespace and id: the longest identifier allowed.
const idPad = 76

// Args are the flags of a spare (before Action): placeholders long enough
// that, once adopted, the spare can show in its command line the flags a
// shim started for its container has.
func Args(address, publishBinary string) []string {
	pad := strings.Repeat("_", idPad)
	return []string{"-namespace", pad, "-id", pad, "-address", address, "-publish-binary", publishBinary}
}

// Request makes a spare the shim of one container.
type Request struct {
	Namespace  string `json:"namespace"`
	ID         string `json:"id"`
	Bundle     string `json:"bundle"`
	ShimCgroup string `json:"shim_cgroup,omitempty"`
}

// Reply is the spare's answer.
type Reply struct {
	// Address is the ttrpc address the shim serves, "unix://<path>".
	Address string `json:"address,omitempty"`
	// InUse means the container's group already has a shim.
	InUse bool `json:"in_use,omitempty"`
	// Error says why the spare could not become the container's shim.
	Error string `json:"error,omitempty"`
}

// ErrInUse is Adopt's error when the group's shim already runs.
var ErrInUse = errors.New("the group's shim already runs")

// Shim is a spare shim, seen from berthd.
type Shim struct {
	cmd  *exec.Cmd
	conn *net.UnixConn
}

// Start starts a spare: cmd is the shim command (binary, flags ending in
// Action, environment, working directory); Start adds the control socket
// and its own session. The process is reaped in the background.
func Start(cmd *exec.Cmd) (*Shim, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket for a spare shim: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "spare-control")
	theirs := os.NewFile(uintptr(fds[1]), "spare-control")
	defer theirs.Close()
	defer mine.Close()
	c, err := net.FileConn(mine)
	if err != nil {
		return nil, fmt.Errorf("control socket for a spare shim: %w", err)
	}
	cmd.ExtraFiles = []*os.File{theirs}
	// Its own session, as the start command gives a shim: no terminal,
	// and berthd's process group signals do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		c.Close()
		return nil, fmt.Errorf("start spare shim: %w", err)
	}
	go cmd.Wait()
	return &Shim{cmd: cmd, conn: c.(*net.UnixConn)}, nil
}

// Pid is the spare's process id, which it keeps as the container's shim.
func (s *Shim) Pid() int { return s.cmd.Process.Pid }

// Adopt makes the spare the shim of req's container and returns its
// address. On any error the spare is gone (or going) and the caller starts
// a shim the usual way.
func (s *Shim) Adopt(ctx context.Context, req Request) (string, error) {
	defer s.conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		s.conn.SetDeadline(deadline)
	} else {
		s.conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if err := json.NewEncoder(s.conn).Encode(req); err != nil {
		s.kill()
		return "", fmt.Errorf("send to spare shim: %w", err)
	}
	var rep Reply
	if err := json.NewDecoder(s.conn).Decode(&rep); err != nil {
		s.kill()
		return "", fmt.Errorf("spare shim's reply: %w", err)
	}
	switch {
	case rep.InUse:
		return "", ErrInUse
	case rep.Error != "":
		return "", errors.New(rep.Error)
	case rep.Address == "":
		return "", errors.New("spare shim replied without an address")
	}
	return rep.Address, nil
}

// Close dismisses an unused spare: it exits when its control socket
// closes.
func (s *Shim) Close() error {
	return s.conn.Close()
}

func (s *Shim) kill() {
	s.cmd.Process.Kill()
}

// Receive is the spare's side: it waits for the request on its control
// socket and returns it with a function to send the reply. io.EOF means
// berthd dismissed it.
func Receive(conn net.Conn) (Request, func(Reply) error, error) {
	var req Request
	if err := json.NewDecoder(conn).Decode(&req); err != nil {
		return req, nil, err
	}
	reply := func(r Reply) error {
		return json.NewEncoder(conn).Encode(r)
	}
	return req, reply, nil
}
