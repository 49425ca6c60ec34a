// Package storage keeps a snapshotter's own state: a small bbolt database
// that maps snapshot keys and names to numeric ids, kinds, parent chains,
// labels, times and committed usage, and the layout of the snapshot
// directories (<root>/snapshots/<id>) with their asynchronous removal.
//
// It is not namespaced: the namespaced, garbage-collected view of snapshots
// lives in core/metadata above the snapshotters.
package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/berthd/berth/core/labels"
	"github.com/berthd/berth/core/snapshots"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketSnapshots = []byte("snapshots") // key or name -> record
	bucketChildren  = []byte("children")  // parent id ++ child id -> nothing
)

// MetaStore is the record database of one snapshotter.
type MetaStore struct {
	db *bolt.DB
}

// OpenMetaStore opens (creating if needed) the database at path. It fails
// at once, rather than waiting, when another process holds the file.
func OpenMetaStore(path string) (*MetaStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 100 * time.Millisecond,
		// The freelist is rebuilt on open instead of written on every
		// commit: commits are the hot path (every Prepare and Commit).
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("snapshot database %s is in use by another process: %w", path, errdefs.ErrUnavailable)
	}
	if err != nil {
		return nil, fmt.Errorf("open snapshot database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketSnapshots, bucketChildren} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise snapshot database %s: %w", path, err)
	}
	return &MetaStore{db: db}, nil
}

// Close closes the database.
func (ms *MetaStore) Close() error {
	return ms.db.Close()
}

// View runs fn in a read-only transaction.
func (ms *MetaStore) View(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ms.db.View(func(tx *bolt.Tx) error { return fn(newTx(tx)) })
}

// Update runs fn in a read-write transaction, committed when fn returns nil.
func (ms *MetaStore) Update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ms.db.Update(func(tx *bolt.Tx) error { return fn(newTx(tx)) })
}

// Tx is one transaction on the records.
type Tx struct {
	snapshots *bolt.Bucket
	children  *bolt.Bucket
}

func newTx(tx *bolt.Tx) *Tx {
	return &Tx{snapshots: tx.Bucket(bucketSnapshots), children: tx.Bucket(bucketChildren)}
}

// Snapshot is what a snapshotter needs to lay out a snapshot on disk.
type Snapshot struct {
	ID        uint64
	Kind      snapshots.Kind
	ParentIDs []uint64 // nearest parent first
}

func (tx *Tx) get(key string) (record, error) {
	if key == "" {
		return record{}, fmt.Errorf("snapshot key must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	v := tx.snapshots.Get([]byte(key))
	if v == nil {
		return record{}, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	r, err := unmarshalRecord(v)
	if err != nil {
		return record{}, fmt.Errorf("read record of snapshot %q: %w", key, err)
	}
	return r, nil
}

func (tx *Tx) put(key string, r record) error {
	if err := tx.snapshots.Put([]byte(key), r.marshal()); err != nil {
		return fmt.Errorf("write record of snapshot %q: %w", key, err)
	}
	return nil
}

// Info returns the id, description and stored usage of a snapshot.
func (tx *Tx) Info(key string) (uint64, snapshots.Info, snapshots.Usage, error) {
	r, err := tx.get(key)
	if err != nil {
		return 0, snapshots.Info{}, snapshots.Usage{}, err
	}
	return r.id, r.info(key), r.usage, nil
}

// Snapshot returns the layout of an active or view snapshot; a committed
// one has no mounts and yields ErrFailedPrecondition.
func (tx *Tx) Snapshot(key string) (Snapshot, error) {
	r, err := tx.get(key)
	if err != nil {
		return Snapshot{}, err
	}
	if r.kind != snapshots.KindActive && r.kind != snapshots.KindView {
		return Snapshot{}, fmt.Errorf("snapshot %q is %s, not active or view: %w", key, r.kind, errdefs.ErrFailedPrecondition)
	}
	return Snapshot{ID: r.id, Kind: r.kind, ParentIDs: r.parents}, nil
}

// Create records a new active or view snapshot on top of parent ("" for
// none), which must be committed.
func (tx *Tx) Create(kind snapshots.Kind, key, parent string, opts ...snapshots.Opt) (Snapshot, error) {
	if kind != snapshots.KindActive && kind != snapshots.KindView {
		return Snapshot{}, fmt.Errorf("create snapshot %q of kind %s: only active and view snapshots can be created: %w", key, kind, errdefs.ErrInvalidArgument)
	}
	base, err := applyOpts(opts)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", key, err)
	}
	if err := tx.checkFree(key); err != nil {
		return Snapshot{}, err
	}
	r := record{kind: kind, labels: copyLabels(base.Labels)}
	if parent != "" {
		if err := tx.setParent(&r, key, parent); err != nil {
			return Snapshot{}, err
		}
	}
	id, err := tx.snapshots.NextSequence()
	if err != nil {
		return Snapshot{}, fmt.Errorf("allocate id for snapshot %q: %w", key, err)
	}
	r.id = id
	r.created = now()
	r.updated = r.created
	if err := tx.link(r); err != nil {
		return Snapshot{}, err
	}
	if err := tx.put(key, r); err != nil {
		return Snapshot{}, err
	}
	return Snapshot{ID: r.id, Kind: r.kind, ParentIDs: r.parents}, nil
}

// applyOpts gathers what the options set and checks their labels.
func applyOpts(opts []snapshots.Opt) (snapshots.Info, error) {
	var base snapshots.Info
	for _, opt := range opts {
		if err := opt(&base); err != nil {
			return base, fmt.Errorf("apply option: %w", err)
		}
	}
	return base, labels.ValidateAll(base.Labels)
}

// checkFree fails unless key names no snapshot yet.
func (tx *Tx) checkFree(key string) error {
	if key == "" {
		return fmt.Errorf("snapshot key must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if tx.snapshots.Get([]byte(key)) != nil {
		return fmt.Errorf("snapshot %q: %w", key, errdefs.ErrAlreadyExists)
	}
	return nil
}

// setParent makes the committed snapshot parent the parent of r.
func (tx *Tx) setParent(r *record, key, parent string) error {
	p, err := tx.get(parent)
	if err != nil {
		return fmt.Errorf("parent of snapshot %q: %w", key, err)
	}
	if p.kind != snapshots.KindCommitted {
		return fmt.Errorf("parent %q of snapshot %q is %s, not committed: %w", parent, key, p.kind, errdefs.ErrInvalidArgument)
	}
	r.parent = parent
	r.parents = append([]uint64{p.id}, p.parents...)
	return nil
}

func childKey(parent, child uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, parent), child)
}

// link records r as a child of its parent, so removing the parent is refused.
func (tx *Tx) link(r record) error {
	if len(r.parents) == 0 {
		return nil
	}
	if err := tx.children.Put(childKey(r.parents[0], r.id), nil); err != nil {
		return fmt.Errorf("link snapshot %d to parent %d: %w", r.id, r.parents[0], err)
	}
	return nil
}

func (tx *Tx) hasChildren(id uint64) bool {
	prefix := binary.BigEndian.AppendUint64(nil, id)
	k, _ := tx.children.Cursor().Seek(prefix)
	return len(k) == 16 && binary.BigEndian.Uint64(k) == id
}

// Commit turns the active snapshot key into the committed snapshot name
// with the given usage, keeping its id, which it returns. Labels come from
// opts only; a snapshot prepared without a parent may be given one here
// (snapshots.Info.Parent set by an option), one with a parent may not.
func (tx *Tx) Commit(key, name string, usage snapshots.Usage, opts ...snapshots.Opt) (uint64, error) {
	base, err := applyOpts(opts)
	if err != nil {
		return 0, fmt.Errorf("committed snapshot %q: %w", name, err)
	}
	r, err := tx.get(key)
	if err != nil {
		return 0, err
	}
	if r.kind != snapshots.KindActive {
		return 0, fmt.Errorf("commit snapshot %q: it is %s, not active: %w", key, r.kind, errdefs.ErrFailedPrecondition)
	}
	if err := tx.checkFree(name); err != nil {
		return 0, fmt.Errorf("commit %q: %w", key, err)
	}
	if err := tx.rebase(&r, key, base.Parent); err != nil {
		return 0, err
	}
	r.kind = snapshots.KindCommitted
	r.labels = copyLabels(base.Labels)
	r.usage = usage
	r.created = now()
	r.updated = r.created
	if err := tx.snapshots.Delete([]byte(key)); err != nil {
		return 0, fmt.Errorf("delete active record %q: %w", key, err)
	}
	return r.id, tx.put(name, r)
}

func (tx *Tx) rebase(r *record, key, parent string) error {
	if parent == "" || parent == r.parent {
		return nil
	}
	if r.parent != "" {
		return fmt.Errorf("commit %q: cannot change its parent from %q to %q: %w", key, r.parent, parent, errdefs.ErrInvalidArgument)
	}
	if err := tx.setParent(r, key, parent); err != nil {
		return err
	}
	return tx.link(*r)
}

// Remove deletes the record of a snapshot without children and returns its
// id and kind.
func (tx *Tx) Remove(key string) (uint64, snapshots.Kind, error) {
	r, err := tx.get(key)
	if err != nil {
		return 0, 0, err
	}
	if tx.hasChildren(r.id) {
		return 0, 0, fmt.Errorf("remove snapshot %q: it has children: %w", key, errdefs.ErrFailedPrecondition)
	}
	if len(r.parents) > 0 {
		if err := tx.children.Delete(childKey(r.parents[0], r.id)); err != nil {
			return 0, 0, fmt.Errorf("unlink snapshot %q from its parent: %w", key, err)
		}
	}
	if err := tx.snapshots.Delete([]byte(key)); err != nil {
		return 0, 0, fmt.Errorf("remove record of snapshot %q: %w", key, err)
	}
	return r.id, r.kind, nil
}

// Update changes the labels of a snapshot. fieldpaths "labels" (all
// labels) and "labels.<key>" (one label; an empty or absent value in info
// deletes it) select what changes; none means all labels. Other fields are
// immutable: naming one yields ErrInvalidArgument.
func (tx *Tx) Update(info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	r, err := tx.get(info.Name)
	if err != nil {
		return snapshots.Info{}, err
	}
	updated, err := updatedLabels(r.labels, info, fieldpaths)
	if err != nil {
		return snapshots.Info{}, err
	}
	if err := labels.ValidateAll(updated); err != nil {
		return snapshots.Info{}, fmt.Errorf("update snapshot %q: %w", info.Name, err)
	}
	r.labels = updated
	r.updated = now()
	if err := tx.put(info.Name, r); err != nil {
		return snapshots.Info{}, err
	}
	return r.info(info.Name), nil
}

func updatedLabels(current map[string]string, info snapshots.Info, fieldpaths []string) (map[string]string, error) {
	if len(fieldpaths) == 0 {
		return copyLabels(info.Labels), nil
	}
	labels := copyLabels(current)
	if labels == nil {
		labels = map[string]string{}
	}
	for _, path := range fieldpaths {
		if key, ok := cutPrefix(path, "labels."); ok {
			if v := info.Labels[key]; v != "" {
				labels[key] = v
			} else {
				delete(labels, key)
			}
			continue
		}
		if path != "labels" {
			return nil, fmt.Errorf("update snapshot %q: field %q cannot be changed: %w", info.Name, path, errdefs.ErrInvalidArgument)
		}
		labels = copyLabels(info.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
	}
	return copyLabels(labels), nil
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return "", false
}

// Walk calls fn with every snapshot, in key order. fn must not write to
// the store: it runs inside the transaction.
func (tx *Tx) Walk(fn func(snapshots.Info, snapshots.Usage) error) error {
	return tx.snapshots.ForEach(func(k, v []byte) error {
		r, err := unmarshalRecord(v)
		if err != nil {
			return fmt.Errorf("read record of snapshot %q: %w", k, err)
		}
		return fn(r.info(string(k)), r.usage)
	})
}

// IDs returns the ids of every recorded snapshot.
func (tx *Tx) IDs() (map[uint64]bool, error) {
	ids := map[uint64]bool{}
	err := tx.snapshots.ForEach(func(k, v []byte) error {
		id, n := binary.Uvarint(v[min(1, len(v)):])
		if n <= 0 {
			return fmt.Errorf("read id of snapshot %q: %w", k, errCorrupt)
		}
		ids[id] = true
		return nil
	})
	return ids, err
}

// now is the current time as stored: UTC without a monotonic reading, so a
// returned Info equals the one read back later.
func now() time.Time {
	return time.Now().UTC().Round(0)
}
