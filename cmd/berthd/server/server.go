// Package server assembles berthd: it locks the root and state folders,
// initialises the plugins in dependency order, and serves the gRPC and ttrpc
// sockets until it is stopped.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berthd/berth/plugins"
)

// Server is a running berthd.
type Server struct {
	config  *Config
	grpc    *grpc.Server
	ttrpc   *ttrpc.Server
	health  *health.Server
	plugins *plugins.Set
	locks   []*os.File
	cancel  context.CancelFunc
	debug   *debugServer

	mu        sync.Mutex
	listeners []net.Listener
	sockets   []string
}

// gracePeriod bounds how long Stop waits for in-flight calls before it
// closes the remaining connections.
const gracePeriod = 10 * time.Second

// New locks the folders and initialises every plugin. It fails when a
// required plugin fails or when another berthd holds root or state.
func New(ctx context.Context, cfg *Config, configPath string) (*Server, error) {
	s := &Server{config: cfg}
	ok := false
	defer func() {
		if !ok {
			s.release()
		}
	}()
	for _, dir := range []struct{ kind, path string }{{"root", cfg.Root}, {"state", cfg.State}} {
		lock, err := lockDir(dir.kind, dir.path)
		if err != nil {
			return nil, err
		}
		s.locks = append(s.locks, lock)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel

	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.GRPC.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(cfg.GRPC.MaxSendMsgSize),
		grpc.ChainUnaryInterceptor(unaryInterceptors()...),
		grpc.ChainStreamInterceptor(streamInterceptors()...),
	)
	var err error
	if s.ttrpc, err = ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(ttrpcInterceptor)); err != nil {
		return nil, fmt.Errorf("create ttrpc server: %w", err)
	}
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)

	if s.plugins, err = initPlugins(pctx, cfg, configPath); err != nil {
		return nil, err
	}
	if err := s.registerServices(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// lockDir creates dir (0711) and takes an exclusive, non-blocking lock on a
// file in it, so a second berthd on the same folder fails at once.
func lockDir(kind, dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("create %s %s: %w", kind, dir, err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("set mode of %s %s: %w", kind, dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".berthd.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock of %s %s: %w", kind, dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s %s is in use by another berthd", kind, dir)
		}
		return nil, fmt.Errorf("lock %s %s: %w", kind, dir, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

func initPlugins(ctx context.Context, cfg *Config, configPath string) (*plugins.Set, error) {
	regs, err := registrations(cfg)
	if err != nil {
		return nil, err
	}
	ordered, err := plugins.Graph(regs)
	if err != nil {
		return nil, err
	}
	props := map[string]string{
		plugins.PropertyRootDir:      cfg.Root,
		plugins.PropertyStateDir:     cfg.State,
		plugins.PropertyGRPCAddress:  cfg.GRPC.Address,
		plugins.PropertyTTRPCAddress: cfg.TTRPCAddress(),
		plugins.PropertyConfigPath:   configPath,
	}
	set := plugins.NewSet()
	for _, r := range ordered {
		uri := r.URI()
		if slices.Contains(cfg.DisabledPlugins, uri) {
			slog.Info("plugin disabled", "plugin", uri)
			continue
		}
		ic := plugins.NewContext(ctx, r, set, cfg.Root, cfg.State, cfg.Plugins[uri], props)
		start := time.Now()
		inst, err := r.InitFn(ic)
		set.Add(r, *ic.Meta, inst, err)
		switch {
		case err == nil:
			slog.Debug("plugin initialised", "plugin", uri, "took", time.Since(start))
		case errors.Is(err, plugins.ErrSkipPlugin):
			slog.Info("plugin skipped", "plugin", uri, "reason", err)
		default:
			slog.Warn("plugin failed to initialise", "plugin", uri, "error", err)
		}
		if err != nil && slices.Contains(cfg.RequiredPlugins, uri) {
			closePlugins(set)
			return nil, fmt.Errorf("required plugin %s did not initialise: %w", uri, err)
		}
	}
	for _, uri := range cfg.RequiredPlugins {
		if slices.Contains(cfg.DisabledPlugins, uri) {
			closePlugins(set)
			return nil, fmt.Errorf("required plugin %s is also disabled", uri)
		}
	}
	return set, nil
}

// registrations returns the built-in plugins plus one per proxy plugin.
func registrations(cfg *Config) ([]*plugins.Registration, error) {
	regs := plugins.Registrations()
	names := make([]string, 0, len(cfg.ProxyPlugins))
	for name := range cfg.ProxyPlugins {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := cfg.ProxyPlugins[name]
		factory := plugins.ProxyType(p.Type)
		if factory == nil {
			return nil, fmt.Errorf("proxy_plugins.%s: berthd has no proxy support for type %q", name, p.Type)
		}
		regs = append(regs, factory(name, p.Address))
	}
	return regs, nil
}

func (s *Server) registerServices() error {
	for _, p := range s.plugins.All() {
		inst, err := p.Instance()
		if err != nil {
			continue
		}
		if svc, ok := inst.(plugins.GRPCService); ok {
			if err := svc.Register(s.grpc); err != nil {
				return fmt.Errorf("register gRPC service of %s: %w", p.Registration.URI(), err)
			}
		}
		if svc, ok := inst.(plugins.TTRPCService); ok {
			if err := svc.RegisterTTRPC(s.ttrpc); err != nil {
				return fmt.Errorf("register ttrpc service of %s: %w", p.Registration.URI(), err)
			}
		}
	}
	return nil
}

// Plugins returns the initialised plugins.
func (s *Server) Plugins() *plugins.Set { return s.plugins }

// Serve listens on the configured sockets and serves until Stop. It returns
// once every listener is open; serving errors are logged.
func (s *Server) Serve() error {
	gl, err := listenUnix(s.config.GRPC.Address, s.config.GRPC.UID, s.config.GRPC.GID)
	if err != nil {
		return err
	}
	s.track(gl, s.config.GRPC.Address)
	tl, err := listenUnix(s.config.TTRPCAddress(), s.config.GRPC.UID, s.config.GRPC.GID)
	if err != nil {
		return err
	}
	s.track(tl, s.config.TTRPCAddress())
	if s.config.Debug.Address != "" {
		if s.debug, err = startDebug(s.config.Debug.Address); err != nil {
			return err
		}
	}
	go func() {
		if err := s.grpc.Serve(gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			slog.Error("gRPC server stopped", "error", err)
		}
	}()
	go func() {
		if err := s.ttrpc.Serve(context.Background(), tl); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			slog.Error("ttrpc server stopped", "error", err)
		}
	}()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	slog.Info("berthd serving", "address", s.config.GRPC.Address, "ttrpc", s.config.TTRPCAddress(), "root", s.config.Root, "state", s.config.State)
	return nil
}

func (s *Server) track(l net.Listener, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, l)
	s.sockets = append(s.sockets, path)
}

// listenUnix opens a unix socket at path with mode 0660, its parent 0711. A
// stale socket file is removed first: the root and state locks already
// prove no other berthd uses this configuration.
func listenUnix(path string, uid, gid int) (net.Listener, error) {
	if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
		return nil, fmt.Errorf("socket path %s is %d bytes, longer than the %d a unix socket allows", path, len(path), len(unix.RawSockaddrUnix{}.Path)-1)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("create socket dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("set mode of socket dir %s: %w", dir, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("set mode of socket %s: %w", path, err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		l.Close()
		return nil, fmt.Errorf("set owner of socket %s: %w", path, err)
	}
	return l, nil
}

// Stop stops accepting calls, lets in-flight ones finish (up to a grace
// period), closes the plugins in reverse order, removes the sockets and
// releases the locks.
func (s *Server) Stop() {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(gracePeriod):
		slog.Warn("in-flight calls did not finish in time; closing them", "grace", gracePeriod)
		s.grpc.Stop()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), gracePeriod)
	if err := s.ttrpc.Shutdown(ctx); err != nil {
		s.ttrpc.Close()
	}
	cancel()
	if s.debug != nil {
		s.debug.stop()
	}
	s.cancel()
	closePlugins(s.plugins)
	s.mu.Lock()
	for _, p := range s.sockets {
		os.Remove(p)
	}
	s.mu.Unlock()
	s.release()
	slog.Info("berthd stopped")
}

func closePlugins(set *plugins.Set) {
	all := set.All()
	for i := len(all) - 1; i >= 0; i-- {
		inst, err := all[i].Instance()
		if err != nil {
			continue
		}
		if c, ok := inst.(io.Closer); ok {
			if err := c.Close(); err != nil {
				slog.Warn("close plugin", "plugin", all[i].Registration.URI(), "error", err)
			}
		}
	}
}

func (s *Server) release() {
	if s.cancel != nil {
		s.cancel()
	}
	for _, l := range s.locks {
		l.Close()
	}
	s.locks = nil
}
