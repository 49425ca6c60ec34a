package shim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/errgrpc"
	"github.com/berthd/berth/runtime/shim/events"
	"github.com/berthd/berth/runtime/shim/reaper"
	"github.com/berthd/berth/runtime/shim/task"
)

// Inherited descriptors of the long-lived shim.
const (
	listenerFD = 3
	readyFD    = 4
)

const (
	shutdownReplyGrace    = 100 * time.Millisecond
	serverShutdownTimeout = 2 * time.Second
	eventFlushTimeout     = 5 * time.Second
)

// Memory settings for the shim's Go runtime, unless the environment sets
// them: the shim's heap is small and mostly idle, so collect it early and
// keep it near its live size; one shim runs per container.
const (
	gcPercent   = 25
	memoryLimit = 16 << 20
	maxProcs    = 1
)

func tuneRuntime() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(maxProcs)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// serve is the long-lived shim: it serves the task API on the inherited
// listener until Shutdown finds no containers left, or SIGTERM/SIGINT.
func serve(f *flags) error {
	tuneRuntime()
	closeLog := setupLog(f)
	defer closeLog()
	ready := inherited(readyFD, "ready", unix.S_IFIFO)
	l, err := inheritedListener()
	if err == nil {
		err = serveTasks(f, l, ready)
	}
	if err != nil && ready != nil {
		// start is still waiting; tell it why the shim could not serve.
		ready.WriteString(err.Error())
		ready.Close()
	}
	return err
}

// inheritedListener is the socket start made, on fd 3.
func inheritedListener() (net.Listener, error) {
	lf := inherited(listenerFD, "listener", unix.S_IFSOCK)
	if lf == nil {
		return nil, errors.New("no listener on fd 3: the shim is started by its start command")
	}
	l, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		return nil, fmt.Errorf("listener on fd 3: %w", err)
	}
	return l, nil
}

// serveTasks serves the task API on l until the shim is told to stop;
// ready, when set, is told once it serves.
func serveTasks(f *flags, l net.Listener, ready *os.File) error {
	defer l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	requestStop := sync.OnceFunc(func() { close(stop) })
	watchSignals(requestStop)

	if err := reaper.SetSubreaper(); err != nil {
		return err
	}
	r := reaper.New()
	go r.Run(ctx)
	ttrpcAddress := os.Getenv(EnvTTRPCAddress)
	if ttrpcAddress == "" {
		slog.Warn(EnvTTRPCAddress + " is not set: events are queued and dropped")
	}
	pub := events.NewPublisher(ttrpcAddress, f.namespace, 0)
	svc := task.New(ctx, task.Config{
		Namespace:   f.namespace,
		RuntimeRoot: DefaultRuntimeRoot(f.address),
		Publisher:   pub,
		Reaper:      r,
		// The reply to Shutdown must leave before the server closes its
		// connections; ttrpc may count a connection idle while the reply
		// is being written.
		Shutdown: func() { time.AfterFunc(shutdownReplyGrace, requestStop) },
	})
	trimmer := newIdleTrimmer()
	server, err := ttrpc.NewServer(
		ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()),
		ttrpc.WithUnaryServerInterceptor(func(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (interface{}, error) {
			trimmer.Touch()
			return errorsToStatus(ctx, u, info, m)
		}),
	)
	if err != nil {
		return fmt.Errorf("create ttrpc server: %w", err)
	}
	taskapi.RegisterTTRPCTaskService(server, svc)
	served := make(chan error, 1)
	go func() { served <- server.Serve(context.Background(), l) }()

	if ready != nil {
		ready.WriteString(readyMessage)
		ready.Close()
	}
	slog.Info("serving", "address", l.Addr().String(), "pid", os.Getpid())
	select {
	case <-stop:
	case err := <-served:
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, ttrpc.ErrServerClosed) {
			slog.Error("ttrpc server stopped", "error", err)
		}
	}
	svc.WaitDeletes()
	return shutdown(server, pub, l)
}

// shutdown lets the last replies (Shutdown's own) go out, delivers the
// queued events and removes the socket.
func shutdown(server *ttrpc.Server, pub *events.Publisher, l net.Listener) error {
	sock := l.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), serverShutdownTimeout)
	if err := server.Shutdown(ctx); err != nil {
		slog.Warn("ttrpc server shutdown", "error", err)
	}
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), eventFlushTimeout)
	defer cancel()
	if err := pub.Close(ctx); err != nil {
		slog.Error("events lost at shutdown", "error", err)
	}
	if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
		slog.Warn("remove socket", "socket", sock, "error", err)
	}
	slog.Info("shim exiting")
	return nil
}

// watchSignals stops the shim on SIGTERM or SIGINT. SIGPIPE is taken too,
// so a write to a vanished reader fails with EPIPE instead of killing the
// shim; handled (not ignored) signals are reset for the runtime's children.
func watchSignals(stop func()) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGPIPE)
	go func() {
		for s := range sigs {
			if s == unix.SIGPIPE {
				continue
			}
			slog.Info("stopping on signal", "signal", s.String())
			stop()
		}
	}()
}

// errorsToStatus turns errdefs errors into the gRPC status codes containerd
// clients map back.
func errorsToStatus(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (interface{}, error) {
	resp, err := method(ctx, unmarshal)
	if err != nil {
		slog.Debug("request failed", "method", info.FullMethod, "error", err)
	}
	return resp, errgrpc.ToGRPC(err)
}

// inherited returns the descriptor fd the start command passed, or nil if
// it is not open or not of the wanted type (unix.S_IFSOCK, unix.S_IFIFO).
func inherited(fd int, name string, mode uint32) *os.File {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != mode {
		return nil
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), name)
}
