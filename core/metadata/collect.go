package metadata

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/gc"
)

// GarbageCollect runs a full collection now: records nothing reaches are
// removed, then every attached backing store is walked and swept of
// objects no namespace records (and records whose backing object is gone
// are dropped). It waits for a collection already running. The error
// joins the failures of the backing-store sweeps; Stats says what was
// done.
func (m *DB) GarbageCollect(ctx context.Context) (gc.Stats, error) {
	return m.collect(ctx, true)
}

// scheduledCollect is the scheduler's collection. Content is swept by
// candidates (the blobs and ingests whose records went), not by walking
// the store, and only dirty snapshotters are walked, so a collection after
// removing one image costs what that image held, not what the store holds.
func (m *DB) scheduledCollect(ctx context.Context) (gc.Stats, error) {
	return m.collect(ctx, false)
}

// dirtyFunc adds to the dirty state.
type dirtyFunc func(*dirtyState)

func dirtyBlob(d digest.Digest) dirtyFunc {
	return func(s *dirtyState) { s.addBlob(d) }
}

func dirtyIngest(bref string) dirtyFunc {
	return func(s *dirtyState) { s.addIngest(bref) }
}

func dirtySnapshotter(name string) dirtyFunc {
	return func(s *dirtyState) { s.addSnapshotter(name) }
}

func (s *dirtyState) addBlob(d digest.Digest) {
	if s.blobs == nil {
		s.blobs = map[digest.Digest]bool{}
	}
	s.blobs[d] = true
}

func (s *dirtyState) addIngest(bref string) {
	if s.brefs == nil {
		s.brefs = map[string]bool{}
	}
	s.brefs[bref] = true
}

func (s *dirtyState) addSnapshotter(name string) {
	if s.snapshotters == nil {
		s.snapshotters = map[string]bool{}
	}
	s.snapshotters[name] = true
}

// merge adds o to s.
func (s *dirtyState) merge(o dirtyState) {
	s.all = s.all || o.all
	for d := range o.blobs {
		s.addBlob(d)
	}
	for r := range o.brefs {
		s.addIngest(r)
	}
	for n := range o.snapshotters {
		s.addSnapshotter(n)
	}
}

// markDirty notes that records were removed or references dropped (and,
// through what, which backing objects may now be garbage), then asks the
// scheduler for a collection.
func (m *DB) markDirty(what dirtyFunc) {
	if what != nil {
		m.dirtyMu.Lock()
		what(&m.dirty)
		m.dirtyMu.Unlock()
	}
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

// redirty puts back what a failed run could not act on.
func (m *DB) redirty(d dirtyState) {
	m.dirtyMu.Lock()
	m.dirty.merge(d)
	m.dirtyMu.Unlock()
}

func (m *DB) collect(ctx context.Context, full bool) (gc.Stats, error) {
	m.collectMu.Lock()
	defer m.collectMu.Unlock()
	stats := gc.Stats{Started: time.Now()}
	b := m.stores.Load()
	dirty := m.takeDirty(b)
	dirty.all = dirty.all || full
	removed, err := m.sweepRecords(ctx, &stats)
	if err != nil {
		m.redirty(dirty)
		return stats, err
	}
	dirty.merge(removed)
	if b == nil {
		stats.Elapsed = time.Since(stats.Started)
		return stats, nil
	}
	err = m.sweepBackends(ctx, b, dirty, &stats)
	stats.Elapsed = time.Since(stats.Started)
	return stats, err
}

// sweepRecords marks from the roots and removes every unreached record,
// in one write transaction: writers wait for it (the pause), readers do
// not. It returns what the removed records held in the backing stores.
func (m *DB) sweepRecords(ctx context.Context, stats *gc.Stats) (dirtyState, error) {
	start := time.Now()
	defer func() { stats.Pause = time.Since(start) }()
	var freed dirtyState
	err := m.bolt.Update(func(tx *bolt.Tx) error {
		freed = dirtyState{}
		g := newGCGraph(time.Now())
		if err := g.scan(tx); err != nil {
			return fmt.Errorf("garbage collection: scan records: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		marked, err := gc.Mark(g.roots, g.refs, len(g.removable)+len(g.edges))
		if err != nil {
			return fmt.Errorf("garbage collection: mark: %w", err)
		}
		stats.Marked = marked.Objects()
		stats.Records = nil
		for _, n := range g.removable {
			if marked.Has(n) {
				continue
			}
			if err := removeRecord(tx, n, &freed); err != nil {
				return fmt.Errorf("garbage collection: remove %s: %w", n, err)
			}
			stats.Records = append(stats.Records, n)
		}
		if len(stats.Records) == 0 {
			return errNothingRemoved // roll back: no commit, no fsync
		}
		return nil
	})
	if errors.Is(err, errNothingRemoved) {
		err = nil
	}
	return freed, err
}

var errNothingRemoved = errors.New("nothing removed")

// sweepBackends sweeps the backing stores concurrently, each as far as
// dirty asks, and adds what they removed to stats. What a failed sweep
// was asked to do is marked dirty again so the next run retries it.
func (m *DB) sweepBackends(ctx context.Context, b *backingStores, dirty dirtyState, stats *gc.Stats) error {
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
	if b.content != nil && (dirty.all || len(dirty.blobs) > 0 || len(dirty.brefs) > 0) {
		wg.Go(func() {
			var r backendResult
			var err error
			if dirty.all {
				r, err = b.content.sweep(ctx)
			} else {
				r, err = b.content.sweepCandidates(ctx, maps.Clone(dirty.blobs), maps.Clone(dirty.brefs))
			}
			merge(r, err, dirtyState{all: dirty.all, blobs: dirty.blobs, brefs: dirty.brefs})
		})
	}
	for name, s := range b.snapshotters {
		if !dirty.all && !dirty.snapshotters[name] {
			continue
		}
		wg.Go(func() {
			r, err := s.sweep(ctx)
			merge(r, err, dirtyState{snapshotters: map[string]bool{name: true}})
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
