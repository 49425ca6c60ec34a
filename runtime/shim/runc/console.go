package runc

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ConsoleSocket is the unix socket a runtime sends a container's pty master
// to (--console-socket).
type ConsoleSocket struct {
	dir string
	l   *net.UnixListener
}

// NewConsoleSocket listens on a fresh socket in a private temporary
// directory; the directory keeps the path short and unguessable.
func NewConsoleSocket() (*ConsoleSocket, error) {
	dir, err := os.MkdirTemp("", "berth-pty")
	if err != nil {
		return nil, fmt.Errorf("create console socket directory: %w", err)
	}
	path := filepath.Join(dir, "pty.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("listen on console socket: %w", err)
	}
	return &ConsoleSocket{dir: dir, l: l}, nil
}

// Path is the socket's path.
func (s *ConsoleSocket) Path() string {
	return filepath.Join(s.dir, "pty.sock")
}

// Close stops listening and removes the socket.
func (s *ConsoleSocket) Close() error {
	err := s.l.Close()
	os.RemoveAll(s.dir)
	return err
}

// ReceiveMaster accepts the runtime's connection and returns the pty master
// it passed. The runtime connects while it creates the process, so by the
// time create or exec returned the connection is waiting; ctx bounds the wait
// in case it never comes.
func (s *ConsoleSocket) ReceiveMaster(ctx context.Context) (*os.File, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	if err := s.l.SetDeadline(deadline); err != nil {
		return nil, err
	}
	conn, err := s.l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("accept console socket connection: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(name, oob)
	if err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive pty master: bad control message (%d messages): %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receive pty master: expected one descriptor, got %d: %v", len(fds), err)
	}
	unix.CloseOnExec(fds[0])
	// Non-blocking before wrapping, so the file's reads and writes go
	// through Go's poller instead of holding a thread each.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("set pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
