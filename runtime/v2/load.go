package v2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/internal/errgrpc"
)

const (
	// loadParallel bounds the shims reconnected at once.
	loadParallel = 64
	// connectTimeout bounds the first call to a reconnected shim. A shim
	// that does not answer in time is kept: it may be busy, and calls to
	// it later will tell.
	connectTimeout = 2 * time.Second
)

// load reconnects to the shims of the bundles left by the previous berthd,
// all in parallel. Bundles whose shim is gone are cleaned up at once.
func (m *Manager) load(ctx context.Context) error {
	bundles, err := m.scanBundles()
	if err != nil {
		return err
	}
	start := time.Now()
	sem := make(chan struct{}, loadParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	live, dead := 0, 0
	for _, b := range bundles {
		wg.Add(1)
		sem <- struct{}{}
		go func(b *bundle) {
			defer func() { <-sem; wg.Done() }()
			ok := m.loadTask(ctx, b)
			mu.Lock()
			if ok {
				live++
			} else {
				dead++
			}
			mu.Unlock()
		}(b)
	}
	wg.Wait()
	if len(bundles) > 0 {
		slog.Info("reconnected to shims", "live", live, "dead", dead, "took", time.Since(start))
	}
	return nil
}

// scanBundles lists <state>/<namespace>/<id> folders.
func (m *Manager) scanBundles() ([]*bundle, error) {
	nss, err := os.ReadDir(m.opts.State)
	if err != nil {
		return nil, fmt.Errorf("read runtime state: %w", err)
	}
	var out []*bundle
	for _, ns := range nss {
		if !ns.IsDir() || identifiers.Validate(ns.Name()) != nil {
			continue
		}
		ids, err := os.ReadDir(filepath.Join(m.opts.State, ns.Name()))
		if err != nil {
			return nil, fmt.Errorf("read runtime state of namespace %s: %w", ns.Name(), err)
		}
		for _, id := range ids {
			if !id.IsDir() || identifiers.Validate(id.Name()) != nil {
				continue
			}
			out = append(out, &bundle{namespace: ns.Name(), id: id.Name(), path: m.bundlePath(ns.Name(), id.Name())})
		}
	}
	return out, nil
}

// loadTask reconnects to the shim of one bundle, or cleans up after it.
// It reports whether the shim lives.
func (m *Manager) loadTask(ctx context.Context, b *bundle) bool {
	ctx = namespaces.WithNamespace(ctx, b.namespace)
	t := &Task{
		namespace: b.namespace, id: b.id, bundle: b,
		runtime: b.readFile(RuntimeFile), binary: b.readFile(BinaryFile),
		gone: make(chan struct{}),
	}
	t.created = true
	m.mu.Lock()
	m.tasks[key(t.namespace, t.id)] = t
	m.mu.Unlock()

	err := m.reconnect(ctx, t)
	if err == nil {
		return true
	}
	slog.Warn("shim is gone; cleaning up", "namespace", t.namespace, "id", t.id, "reason", err)
	t.setExpected() // the connection, if any, is closed here, not by a death
	t.closeConn()
	if errors.Is(err, errNoTask) {
		// A shim that lives but has no task for the bundle (berthd died
		// while creating it) holds nothing: stop it and forget the task.
		m.forgetDead(ctx, t)
		return false
	}
	m.cleanupDead(t, 0)
	m.mu.Lock()
	m.died = append(m.died, TaskDeleted{Namespace: t.namespace, ID: t.id, Exit: *t.exit, ShimDied: true})
	m.mu.Unlock()
	return false
}

// errNoTask means a live shim does not know the bundle's task.
var errNoTask = errors.New("shim has no such task")

// reconnect dials the shim in the bundle's address file and asks for the
// task's pid.
func (m *Manager) reconnect(ctx context.Context, t *Task) error {
	addr := t.bundle.readFile(AddressFile)
	if addr == "" {
		return fmt.Errorf("bundle has no shim address: %w", errdefs.ErrNotFound)
	}
	addr, err := parseAddress([]byte(addr))
	if err != nil {
		return err
	}
	if err := m.connect(t, addr); err != nil {
		return err
	}
	// The log is a convenience: a live shim is kept without it.
	if t.stopLog, err = copyShimLog(t.bundle, t.namespace, t.id); err != nil {
		slog.Warn("shim log", "namespace", t.namespace, "id", t.id, "error", err)
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	resp, err := t.shim.Connect(cctx, &taskapi.ConnectRequest{ID: t.id})
	switch {
	case err == nil:
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		slog.Warn("shim does not answer; keeping it", "namespace", t.namespace, "id", t.id)
		return nil
	case errdefs.IsNotFound(errgrpc.ToNative(err)):
		return errNoTask
	default:
		return fmt.Errorf("connect to shim: %w", err)
	}
	if resp.TaskPid == 0 {
		// Connect answers for a task it does not hold with only the shim's
		// pid; ask for the task itself.
		if _, err := t.shim.State(cctx, &taskapi.StateRequest{ID: t.id}); errdefs.IsNotFound(errgrpc.ToNative(err)) {
			return errNoTask
		}
	}
	t.mu.Lock()
	t.pid = resp.TaskPid
	t.mu.Unlock()
	t.shimPid = int(resp.ShimPid)
	return nil
}

// forgetDead stops a live shim that holds no task and removes the bundle.
func (m *Manager) forgetDead(ctx context.Context, t *Task) {
	if addr, err := parseAddress([]byte(t.bundle.readFile(AddressFile))); err == nil {
		if m.connect(t, addr) == nil {
			m.stopShim(ctx, t)
		}
	}
	if t.binary != "" {
		if _, err := m.deleteShim(ctx, t.binary, t.namespace, t.id, t.bundle.path); err != nil {
			slog.Warn("shim delete", "namespace", t.namespace, "id", t.id, "error", err)
		}
	}
	if err := t.bundle.remove(); err != nil {
		slog.Error("remove bundle", "namespace", t.namespace, "id", t.id, "error", err)
	}
	m.forget(t)
}
