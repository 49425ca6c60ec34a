package metadata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/snapshots"
)

// sweep removes from the backing content store the blobs no namespace
// records and the ingests no namespace's ingest record names (stale ones,
// and those a crash left behind), and drops the blob records whose blob
// is gone. Commits wait while it runs (see contentStore.mu).
func (cs *contentStore) sweep(ctx context.Context) (backendResult, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var r backendResult
	blobs, err := cs.recordedBlobs()
	if err != nil {
		return r, err
	}
	present, errBlobs := cs.sweepBlobs(ctx, blobs, &r)
	errIngests := cs.sweepIngests(ctx, &r)
	if errBlobs != nil {
		return r, errors.Join(errBlobs, errIngests)
	}
	var missing []string
	for d := range blobs {
		if !present[d] {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return r, errIngests
	}
	dropped, err := cs.db.dropRecords(func(tx *bolt.Tx) ([]gc.Node, error) { return dropBlobRecords(tx, missing) })
	r.dropped = dropped
	return r, errors.Join(errIngests, err)
}

// sweepCandidates removes from the backing content store the blobs and
// ingests among the candidates that no namespace records any more: the
// collection after a deletion costs what was deleted, not a walk of the
// whole store.
func (cs *contentStore) sweepCandidates(ctx context.Context, blobs map[digest.Digest]bool, brefs map[string]bool) (backendResult, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var r backendResult
	if err := cs.db.View(func(tx *bolt.Tx) error { return stillRecorded(tx, blobs, brefs) }); err != nil {
		return r, fmt.Errorf("garbage collection: read content records: %w", err)
	}
	var errs []error
	for d := range blobs {
		info, err := cs.backend.Info(ctx, d)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err == nil {
			err = cs.backend.Delete(ctx, d)
		}
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("garbage collection: delete blob %s: %w", d, err))
			continue
		}
		r.blobs = append(r.blobs, d)
		r.reclaimed += info.Size
	}
	for bref := range brefs {
		st, err := cs.backend.Status(ctx, bref)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err == nil {
			err = cs.backend.Abort(ctx, bref)
		}
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("garbage collection: abort ingest %q: %w", bref, err))
			continue
		}
		r.ingests = append(r.ingests, bref)
		r.reclaimed += st.Offset
	}
	return r, errors.Join(errs...)
}

// stillRecorded removes from the candidate sets what some namespace still
// records.
func stillRecorded(tx *bolt.Tx, blobs map[digest.Digest]bool, brefs map[string]bool) error {
	return eachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
		if b := nb.Bucket(bucketContent); b != nil {
			for d := range blobs {
				if b.Get([]byte(d)) != nil {
					delete(blobs, d)
				}
			}
		}
		b := nb.Bucket(bucketIngests)
		if b == nil || len(brefs) == 0 {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if rec, err := decodeIngest(string(k), v); err == nil {
				delete(brefs, rec.bref)
			}
			return nil
		})
	})
}

// recordedBlobs returns the digests any namespace records.
func (cs *contentStore) recordedBlobs() (map[string]bool, error) {
	blobs := map[string]bool{}
	err := cs.db.View(func(tx *bolt.Tx) error {
		return eachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
			if b := nb.Bucket(bucketContent); b != nil {
				b.ForEach(func(k, _ []byte) error {
					blobs[string(k)] = true
					return nil
				})
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("garbage collection: read content records: %w", err)
	}
	return blobs, nil
}

// recordedIngests returns the backing refs every ingest record names.
func (cs *contentStore) recordedIngests() (map[string]bool, error) {
	brefs := map[string]bool{}
	err := cs.db.View(func(tx *bolt.Tx) error {
		return eachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
			b := nb.Bucket(bucketIngests)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				rec, err := decodeIngest(string(k), v)
				if err != nil {
					return err
				}
				brefs[rec.bref] = true
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("garbage collection: read ingest records: %w", err)
	}
	return brefs, nil
}

// sweepBlobs deletes unreferenced blobs and returns the set of blobs the
// backing store has.
func (cs *contentStore) sweepBlobs(ctx context.Context, refs map[string]bool, r *backendResult) (map[string]bool, error) {
	present := map[string]bool{}
	var garbage []content.Info
	err := cs.backend.Walk(ctx, func(info content.Info) error {
		present[info.Digest.String()] = true
		if !refs[info.Digest.String()] {
			garbage = append(garbage, info)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("garbage collection: walk content store: %w", err)
	}
	var errs []error
	for _, info := range garbage {
		if err := cs.backend.Delete(ctx, info.Digest); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("garbage collection: delete blob %s: %w", info.Digest, err))
			continue
		}
		r.blobs = append(r.blobs, info.Digest)
		r.reclaimed += info.Size
	}
	return present, errors.Join(errs...)
}

// sweepIngests aborts backing ingests no record names. Writers do not wait
// for it: an ingest's record is written before its backing ingest exists,
// so reading the records after listing the ingests sees every record a
// listed ingest has.
func (cs *contentStore) sweepIngests(ctx context.Context, r *backendResult) error {
	statuses, err := cs.backend.ListStatuses(ctx)
	if err != nil {
		return fmt.Errorf("garbage collection: list ingests: %w", err)
	}
	brefs, err := cs.recordedIngests()
	if err != nil {
		return err
	}
	var errs []error
	for _, st := range statuses {
		if brefs[st.Ref] {
			continue
		}
		if err := cs.backend.Abort(ctx, st.Ref); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("garbage collection: abort ingest %q: %w", st.Ref, err))
			continue
		}
		r.ingests = append(r.ingests, st.Ref)
		r.reclaimed += st.Offset
	}
	return errors.Join(errs...)
}

// dropBlobRecords removes, in every namespace, the records of blobs the
// backing store lost.
func dropBlobRecords(tx *bolt.Tx, missing []string) ([]gc.Node, error) {
	var dropped []gc.Node
	err := eachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
		b := nb.Bucket(bucketContent)
		if b == nil {
			return nil
		}
		for _, d := range missing {
			if b.Get([]byte(d)) == nil {
				continue
			}
			if err := b.Delete([]byte(d)); err != nil {
				return err
			}
			dropped = append(dropped, node(gc.ResourceContent, ns, d))
		}
		return nil
	})
	return dropped, err
}

// dropRecords runs drop in a write transaction when there may be
// something to drop, and logs what it dropped: records whose backing
// object disappeared behind berth's back.
func (m *DB) dropRecords(drop func(*bolt.Tx) ([]gc.Node, error)) ([]gc.Node, error) {
	var dropped []gc.Node
	err := m.bolt.Update(func(tx *bolt.Tx) (err error) {
		dropped, err = drop(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("garbage collection: drop records of missing objects: %w", err)
	}
	for _, n := range dropped {
		slog.Warn("garbage collection: dropped record whose backing object is missing", "record", n.String())
	}
	return dropped, nil
}

// sweep removes from the backing snapshotter the snapshots no namespace
// records, children before parents, then drops the records whose backing
// snapshot is gone and lets the snapshotter clean up.
func (s *snapshotter) sweep(ctx context.Context) (backendResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := backendResult{snapshotter: s.name}
	refs, err := s.referenced()
	if err != nil {
		return r, err
	}
	tree, err := s.backingTree(ctx)
	if err != nil {
		return r, err
	}
	var errs []error
	for _, root := range tree.roots {
		errs = append(errs, s.prune(ctx, tree, root, refs, &r))
	}
	var missing []string
	for bkey := range refs {
		if _, ok := tree.parentOf[bkey]; !ok {
			missing = append(missing, bkey)
		}
	}
	if len(missing) > 0 {
		dropped, err := s.db.dropRecords(func(tx *bolt.Tx) ([]gc.Node, error) { return s.dropRecords(tx, missing) })
		r.dropped = dropped
		errs = append(errs, err)
	}
	if c, ok := s.backend.(snapshots.Cleaner); ok {
		if err := c.Cleanup(ctx); err != nil && !errdefs.IsNotImplemented(err) {
			errs = append(errs, fmt.Errorf("garbage collection: clean up snapshotter %s: %w", s.name, err))
		}
	}
	return r, errors.Join(errs...)
}

// referenced returns the backing keys the records of every namespace
// name.
func (s *snapshotter) referenced() (map[string]bool, error) {
	refs := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return eachNamespace(tx, func(ns string, _ *bolt.Bucket) error {
			b := snapshotBucket(tx, ns, s.name)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				rec, err := decodeSnapshot(string(k), v)
				if err != nil {
					return err
				}
				refs[rec.bkey] = true
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("garbage collection: read snapshot records of %s: %w", s.name, err)
	}
	return refs, nil
}

// snapshotTree is the backing snapshotter's snapshots by parent.
type snapshotTree struct {
	nodes    map[string][]string // key -> children
	roots    []string
	parentOf map[string]string // every snapshot the walk reported
}

func (s *snapshotter) backingTree(ctx context.Context) (snapshotTree, error) {
	t := snapshotTree{nodes: map[string][]string{}, parentOf: map[string]string{}}
	err := s.backend.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if _, ok := t.nodes[info.Name]; !ok {
			t.nodes[info.Name] = nil
		}
		t.parentOf[info.Name] = info.Parent
		if info.Parent != "" {
			t.nodes[info.Parent] = append(t.nodes[info.Parent], info.Name)
		}
		return nil
	})
	if err != nil {
		return t, fmt.Errorf("garbage collection: walk snapshotter %s: %w", s.name, err)
	}
	for key, parent := range t.parentOf {
		if _, ok := t.parentOf[parent]; parent == "" || !ok {
			t.roots = append(t.roots, key)
		}
	}
	return t, nil
}

// prune removes the unreferenced snapshots of the subtree at key,
// children first.
func (s *snapshotter) prune(ctx context.Context, t snapshotTree, key string, refs map[string]bool, r *backendResult) error {
	var errs []error
	for _, child := range t.nodes[key] {
		errs = append(errs, s.prune(ctx, t, child, refs, r))
	}
	if refs[key] {
		return errors.Join(errs...)
	}
	usage, _ := s.backend.Usage(ctx, key)
	err := s.backend.Remove(ctx, key)
	switch {
	case err == nil:
		r.snapshots = append(r.snapshots, key)
		r.reclaimed += usage.Size
	case errdefs.IsFailedPrecondition(err):
		// A child is still referenced: the parent stays with it.
	case !errdefs.IsNotFound(err):
		errs = append(errs, fmt.Errorf("garbage collection: remove snapshot %q of %s: %w", key, s.name, err))
	}
	return errors.Join(errs...)
}

// dropRecords removes, in every namespace, the snapshot records whose
// backing snapshot is gone.
func (s *snapshotter) dropRecords(tx *bolt.Tx, missing []string) ([]gc.Node, error) {
	gone := map[string]bool{}
	for _, k := range missing {
		gone[k] = true
	}
	var dropped []gc.Node
	err := eachNamespace(tx, func(ns string, _ *bolt.Bucket) error {
		b := snapshotBucket(tx, ns, s.name)
		if b == nil {
			return nil
		}
		var keys []string
		b.ForEach(func(k, v []byte) error {
			if rec, err := decodeSnapshot(string(k), v); err == nil && gone[rec.bkey] {
				keys = append(keys, string(k))
			}
			return nil
		})
		for _, k := range keys {
			rec, err := getSnapshot(b, k)
			if err != nil {
				continue
			}
			if err := deleteSnapshotRecord(b, k, rec); err != nil {
				return err
			}
			dropped = append(dropped, node(gc.ResourceSnapshot, ns, s.name+"/"+k))
		}
		return nil
	})
	return dropped, err
}
