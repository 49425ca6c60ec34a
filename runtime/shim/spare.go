package shim

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime/shim/cgroup"
	"github.com/berthd/berth/runtime/shim/spare"
)

// serveSpare is a shim started ahead of need (see package spare): it
// waits for the container it is for, sets itself up as start would have,
// and serves.
func serveSpare(f *flags) error {
	tuneRuntime()
	cf := inherited(spare.ControlFD, "control", unix.S_IFSOCK)
	if cf == nil {
		return errors.New("no control socket on fd 3: a spare is started by berthd")
	}
	conn, err := net.FileConn(cf)
	cf.Close()
	if err != nil {
		return fmt.Errorf("control socket on fd 3: %w", err)
	}
	if err := adjustOOMScore(os.Getpid()); err != nil {
		slog.Warn("adjust shim OOM score", "error", err)
	}
	req, reply, err := spare.Receive(conn)
	if err != nil {
		conn.Close()
		if errors.Is(err, io.EOF) {
			return nil // dismissed
		}
		return fmt.Errorf("read the spare's request: %w", err)
	}
	l, address, err := adopt(f, req)
	switch {
	case errors.Is(err, errInUse):
		err = reply(spare.Reply{InUse: true})
	case err != nil:
		reply(spare.Reply{Error: err.Error()})
	default:
		err = reply(spare.Reply{Address: address})
	}
	conn.Close()
	if err != nil || l == nil {
		if l != nil {
			l.Close()
			os.Remove(address[len("unix://"):])
		}
		return err
	}
	closeLog := setupLog(f)
	defer closeLog()
	return serveTasks(f, l, nil)
}

// adopt makes the spare the shim of req's container, as start does for a
// new shim: the group's socket, the address and pid files in the bundle,
// the shim cgroup. errInUse means the group's shim already serves.
func adopt(f *flags, req spare.Request) (net.Listener, string, error) {
	if req.Namespace == "" || req.ID == "" || !filepath.IsAbs(req.Bundle) {
		return nil, "", fmt.Errorf("spare request needs a namespace, an id and an absolute bundle path: %+v", req)
	}
	if err := os.Chdir(req.Bundle); err != nil {
		return nil, "", fmt.Errorf("enter bundle: %w", err)
	}
	cloneFlags(f)
	f.namespace, f.id, f.bundle = req.Namespace, req.ID, req.Bundle
	// Show the flags a shim started for this container has.
	title := []string{os.Args[0], "-namespace", f.namespace, "-id", f.id, "-address", f.address, "-publish-binary", f.publishBinary}
	title[0] = strings.Clone(title[0])
	if err := setCmdline(title); err != nil {
		slog.Debug("set the shim's command line", "error", err)
	}
	group, err := groupOf(f.bundle, f.id)
	if err != nil {
		return nil, "", err
	}
	sock, err := SocketPath(f.address, f.namespace, group)
	if err != nil {
		return nil, "", err
	}
	l, err := listen(sock)
	if err != nil {
		return nil, "", err
	}
	address := "unix://" + sock
	fail := func(err error) (net.Listener, string, error) {
		l.Close()
		os.Remove(sock)
		return nil, "", err
	}
	if err := writeFileAtomic(filepath.Join(f.bundle, AddressFile), []byte(address)); err != nil {
		return fail(fmt.Errorf("write address file: %w", err))
	}
	if err := writeFileAtomic(filepath.Join(f.bundle, PidFile), []byte(strconv.Itoa(os.Getpid()))); err != nil {
		return fail(fmt.Errorf("write pid file: %w", err))
	}
	if req.ShimCgroup != "" {
		if err := cgroup.AddProcess(req.ShimCgroup, os.Getpid()); err != nil {
			return fail(fmt.Errorf("move shim to cgroup %s: %w", req.ShimCgroup, err))
		}
	}
	return l, address, nil
}
