package metadata

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/gc"
)

// GarbageCollect runs a full collection now: records nothing reaches are
// removed, then every attached backing store is swept of objects no
// namespace records (and records whose backing object is gone are
// dropped). It waits for a collection already running. The error joins
// the failures of the backing-store sweeps; Stats says what was done.
func (m *DB) GarbageCollect(ctx context.Context) (gc.Stats, error) {
	return m.collect(ctx, true)
}

// scheduledCollect is the scheduler's collection: it sweeps only the
// backing stores that deletions or removed records made dirty.
func (m *DB) scheduledCollect(ctx context.Context) (gc.Stats, error) {
	return m.collect(ctx, false)
}

// markDirty notes that records were removed or references dropped, and
// which backing store may now hold unreferenced objects, then asks the
// scheduler for a collection.
func (m *DB) markDirty(content bool, snapshotter string) {
	m.dirtyMu.Lock()
	m.dirty.content = m.dirty.content || content
	if snapshotter != "" {
		if m.dirty.snapshotters == nil {
			m.dirty.snapshotters = map[string]bool{}
		}
		m.dirty.snapshotters[snapshotter] = true
	}
	m.dirtyMu.Unlock()
	m.sched.Trigger()
}

// waitCollect runs a collection for a synchronous delete of what.
func (m *DB) waitCollect(ctx context.Context, what string) error {
	if _, err := m.sched.Run(ctx); err != nil {
		return fmt.Errorf("%s deleted, but garbage collection failed: %w", what, err)
	}
	return nil
}

// takeDirty returns the dirty state and resets it, unless no backing
// stores are attached yet: then it stays for the first run after Init.
func (m *DB) takeDirty(b *backingStores) dirtyState {
	m.dirtyMu.Lock()
	defer m.dirtyMu.Unlock()
	if b == nil {
		return dirtyState{}
	}
	d := m.dirty
	m.dirty = dirtyState{}
	return d
}

func (m *DB) collect(ctx context.Context, full bool) (gc.Stats, error) {
	m.collectMu.Lock()
	defer m.collectMu.Unlock()
	stats := gc.Stats{Started: time.Now()}
	b := m.stores.Load()
	dirty := m.takeDirty(b)
	if err := m.sweepRecords(ctx, &stats); err != nil {
		m.redirty(dirty)
		return stats, err
	}
	if b == nil {
		stats.Elapsed = time.Since(stats.Started)
		return stats, nil
	}
	plan := sweepPlan(b, dirty, stats.Records, full)
	err := m.sweepBackends(ctx, b, plan, &stats)
	stats.Elapsed = time.Since(stats.Started)
	return stats, err
}

// redirty puts back a dirty state a failed run could not act on.
func (m *DB) redirty(d dirtyState) {
	m.dirtyMu.Lock()
	defer m.dirtyMu.Unlock()
	m.dirty.all = m.dirty.all || d.all
	m.dirty.content = m.dirty.content || d.content
	for name := range d.snapshotters {
		if m.dirty.snapshotters == nil {
			m.dirty.snapshotters = map[string]bool{}
		}
		m.dirty.snapshotters[name] = true
	}
}

// sweepRecords marks from the roots and removes every unreached record,
// in one write transaction: writers wait for it (the pause), readers do
// not.
func (m *DB) sweepRecords(ctx context.Context, stats *gc.Stats) error {
	start := time.Now()
	defer func() { stats.Pause = time.Since(start) }()
	return m.bolt.Update(func(tx *bolt.Tx) error {
		g := newGCGraph(time.Now())
		if err := g.scan(tx); err != nil {
			return fmt.Errorf("garbage collection: scan records: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		marked, err := gc.Mark(g.roots, g.refs)
		if err != nil {
			return fmt.Errorf("garbage collection: mark: %w", err)
		}
		stats.Marked = len(marked)
		var removed []gc.Node
		for _, n := range g.removable {
			if _, ok := marked[n]; ok {
				continue
			}
			if err := removeRecord(tx, n); err != nil {
				return fmt.Errorf("garbage collection: remove %s: %w", n, err)
			}
			removed = append(removed, n)
		}
		stats.Records = removed
		return nil
	})
}

// backendPlan names the backing stores a run sweeps.
type backendPlan struct {
	content      bool
	snapshotters []*snapshotter
}

func sweepPlan(b *backingStores, d dirtyState, removed []gc.Node, full bool) backendPlan {
	all := full || d.all
	plan := backendPlan{content: b.content != nil && (all || d.content)}
	names := map[string]bool{}
	for name := range d.snapshotters {
		names[name] = true
	}
	for _, n := range removed {
		switch n.Type {
		case gc.ResourceContent, gc.ResourceIngest:
			plan.content = b.content != nil
		case gc.ResourceSnapshot:
			name, _, _ := cutSnapshotKey(n.Key)
			names[name] = true
		}
	}
	for name, s := range b.snapshotters {
		if all || names[name] {
			plan.snapshotters = append(plan.snapshotters, s)
		}
	}
	return plan
}

// sweepBackends sweeps the planned backing stores concurrently and adds
// what they removed to stats. A store whose sweep failed is marked dirty
// again so the next run retries it.
func (m *DB) sweepBackends(ctx context.Context, b *backingStores, plan backendPlan, stats *gc.Stats) error {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	merge := func(r backendResult, err error, retry dirtyState) {
		mu.Lock()
		defer mu.Unlock()
		r.addTo(stats)
		if err != nil {
			errs = append(errs, err)
			m.redirty(retry)
		}
	}
	if plan.content {
		wg.Go(func() {
			r, err := b.content.sweep(ctx)
			merge(r, err, dirtyState{content: true})
		})
	}
	for _, s := range plan.snapshotters {
		wg.Go(func() {
			r, err := s.sweep(ctx)
			merge(r, err, dirtyState{snapshotters: map[string]bool{s.name: true}})
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// backendResult is what one backing-store sweep did.
type backendResult struct {
	blobs       []digest.Digest
	ingests     []string
	snapshotter string
	snapshots   []string
	dropped     []gc.Node
	reclaimed   int64
}

func (r backendResult) addTo(s *gc.Stats) {
	s.Blobs = append(s.Blobs, r.blobs...)
	s.Ingests = append(s.Ingests, r.ingests...)
	if len(r.snapshots) > 0 {
		if s.Snapshots == nil {
			s.Snapshots = map[string][]string{}
		}
		s.Snapshots[r.snapshotter] = append(s.Snapshots[r.snapshotter], r.snapshots...)
	}
	s.Dropped = append(s.Dropped, r.dropped...)
	s.Reclaimed += r.reclaimed
}
