package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/runtime/shim/cgroup"
	"github.com/berthd/berth/runtime/shim/task"
)

const (
	// readyTimeout bounds how long start waits for the new shim to serve.
	readyTimeout = 10 * time.Second
	// readyMessage is what the shim writes on fd 4 once it serves.
	readyMessage = "ok"
	// stdinTimeout bounds the read of the runtime options on stdin.
	stdinTimeout = 2 * time.Second
)

// errInUse means a live shim already serves the socket.
var errInUse = errors.New("socket served by a running shim")

// start launches the long-lived shim for the bundle, or reuses the running
// shim of the container's group, and prints its address.
func start(f *flags) (err error) {
	slog.SetDefault(stderrLogger(f.debug))
	group, err := groupOf(f.bundle, f.id)
	if err != nil {
		return err
	}
	sock, err := SocketPath(f.address, f.namespace, group)
	if err != nil {
		return err
	}
	address := "unix://" + sock
	l, err := listen(sock)
	if errors.Is(err, errInUse) {
		return reuse(f, sock, address)
	}
	if err != nil {
		return err
	}
	defer func() {
		l.Close()
		if err != nil {
			os.Remove(sock)
		}
	}()
	if err := writeFileAtomic(filepath.Join(f.bundle, AddressFile), []byte(address)); err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	pid, err := spawn(f, l)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	if err := writeFileAtomic(filepath.Join(f.bundle, PidFile), []byte(strconv.Itoa(pid))); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if opts, err := readStartOptions(os.Stdin); err != nil {
		return err
	} else if opts.GetShimCgroup() != "" {
		if err := cgroup.AddProcess(opts.GetShimCgroup(), pid); err != nil {
			return fmt.Errorf("move shim to cgroup %s: %w", opts.GetShimCgroup(), err)
		}
	}
	if err := adjustOOMScore(pid); err != nil {
		slog.Warn("adjust shim OOM score", "error", err)
	}
	_, err = fmt.Fprint(os.Stdout, address)
	return err
}

// reuse points the bundle at the running shim of the container's group.
func reuse(f *flags, sock, address string) error {
	pid, err := shimPid(sock)
	if err != nil {
		return fmt.Errorf("ask the running shim of the group for its pid: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(f.bundle, AddressFile), []byte(address)); err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(f.bundle, PidFile), []byte(strconv.Itoa(pid))); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	_, err = fmt.Fprint(os.Stdout, address)
	return err
}

// shimPid asks the shim serving sock for its pid.
func shimPid(sock string) (int, error) {
	conn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return 0, err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := taskapi.NewTTRPCTaskClient(client).Connect(ctx, &taskapi.ConnectRequest{})
	if err != nil {
		return 0, err
	}
	return int(resp.ShimPid), nil
}

// listen creates the shim's socket. A stale socket file (its shim died)
// is replaced; a live one is reported as errInUse.
func listen(sock string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	for attempt := 0; ; attempt++ {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err == nil {
			// The socket outlives this process; only an explicit remove may
			// delete it.
			l.SetUnlinkOnClose(false)
			if err := os.Chmod(sock, 0o600); err != nil {
				l.Close()
				os.Remove(sock)
				return nil, fmt.Errorf("restrict socket %s: %w", sock, err)
			}
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt > 0 {
			return nil, fmt.Errorf("listen on %s: %w", sock, err)
		}
		if canConnect(sock) {
			return nil, errInUse
		}
		if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("remove stale socket %s: %w", sock, err)
		}
	}
}

// spawn starts the long-lived shim in a session of its own, with the
// listener on fd 3 and a readiness pipe on fd 4, and waits until it serves.
func spawn(f *flags, l *net.UnixListener) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	lf, err := l.File()
	if err != nil {
		return 0, fmt.Errorf("pass listener: %w", err)
	}
	defer lf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("create readiness pipe: %w", err)
	}
	defer readyR.Close()
	args := []string{"-namespace", f.namespace, "-id", f.id, "-address", f.address}
	if f.debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = f.bundle
	cmd.ExtraFiles = []*os.File{lf, readyW}
	// Its own session: no controlling terminal, and signals to the daemon's
	// process group do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return 0, fmt.Errorf("start shim: %w", err)
	}
	msg, err := readReady(readyR)
	if err != nil || msg != readyMessage {
		cmd.Process.Kill()
		cmd.Wait()
		if err == nil {
			err = fmt.Errorf("shim exited during startup")
			if msg != "" {
				err = errors.New(msg)
			}
		}
		return 0, err
	}
	pid := cmd.Process.Pid
	// The shim lives on; this process exits without waiting for it.
	cmd.Process.Release()
	return pid, nil
}

func readReady(r *os.File) (string, error) {
	done := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, 4096))
		done <- b
	}()
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case b := <-done:
		return strings.TrimSpace(string(b)), nil
	case <-t.C:
		return "", fmt.Errorf("shim not serving after %s", readyTimeout)
	}
}

// readStartOptions reads the runtime options containerd 1.7 writes on the
// start command's stdin (a protobuf Any); an empty or terminal stdin means
// none.
func readStartOptions(stdin *os.File) (*options.Options, error) {
	fi, err := stdin.Stat()
	if err != nil || (!fi.Mode().IsRegular() && fi.Mode()&os.ModeNamedPipe == 0) {
		return &options.Options{}, nil
	}
	done := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(stdin, 1<<20))
		done <- b
	}()
	var data []byte
	select {
	case data = <-done:
	case <-time.After(stdinTimeout):
		slog.Warn("stdin not closed; ignoring runtime options")
		return &options.Options{}, nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &options.Options{}, nil
	}
	var a anypb.Any
	if err := proto.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("decode runtime options on stdin: %w", err)
	}
	return task.DecodeOptions(&a)
}

// adjustOOMScore makes the shim a slightly better OOM victim than the
// daemon that started it, as containerd does.
func adjustOOMScore(pid int) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", os.Getppid()))
	if err != nil {
		return err
	}
	score, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return err
	}
	score = min(score+1, 1000)
	return os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(strconv.Itoa(score)), 0)
}
