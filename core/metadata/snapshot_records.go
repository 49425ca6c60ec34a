package metadata

import (
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/snapshots"
)

// Snapshot record fields.
const (
	tagSnapBackendKey byte = 1 + iota
	tagSnapParent
	tagSnapKind
	tagSnapCreated
	tagSnapUpdated
	tagSnapLabels
	tagSnapChildren
)

// snapshotRecord is a namespace's snapshot: the backing snapshot it
// stands for, its parent by namespaced key, and what the namespace keeps
// about it. children counts the snapshots of the namespace whose parent
// it is, so Remove can refuse a parent without scanning.
type snapshotRecord struct {
	bkey     string
	parent   string
	kind     snapshots.Kind
	created  time.Time
	updated  time.Time
	labels   map[string]string
	children int64
}

func (r snapshotRecord) encode() []byte {
	e := newEncoder()
	e.string(tagSnapBackendKey, r.bkey)
	e.string(tagSnapParent, r.parent)
	e.int(tagSnapKind, int64(r.kind))
	e.time(tagSnapCreated, r.created)
	e.time(tagSnapUpdated, r.updated)
	e.strings(tagSnapLabels, r.labels)
	if r.children > 0 {
		e.int(tagSnapChildren, r.children)
	}
	return e.buf
}

func decodeSnapshot(key string, v []byte) (snapshotRecord, error) {
	var r snapshotRecord
	err := decodeFields(v, func(tag byte, v []byte) (err error) {
		var n int64
		switch tag {
		case tagSnapBackendKey:
			r.bkey = string(v)
		case tagSnapParent:
			r.parent = string(v)
		case tagSnapKind:
			n, err = decodeInt(v)
			r.kind = snapshots.Kind(n)
		case tagSnapCreated:
			r.created, err = decodeTime(v)
		case tagSnapUpdated:
			r.updated, err = decodeTime(v)
		case tagSnapLabels:
			r.labels, err = decodeStrings(v)
		case tagSnapChildren:
			r.children, err = decodeInt(v)
		}
		return err
	})
	if err == nil && r.bkey == "" {
		err = fmt.Errorf("%w: no backing key", errCorrupt)
	}
	if err != nil {
		return r, fmt.Errorf("snapshot %q: %w", key, err)
	}
	return r, nil
}

func (r snapshotRecord) info(key string) snapshots.Info {
	return snapshots.Info{
		Kind:    r.kind,
		Name:    key,
		Parent:  r.parent,
		Labels:  cloneLabels(r.labels),
		Created: r.created,
		Updated: r.updated,
	}
}

// snapshotBucket returns snapshots/<name> of ns, or nil.
func snapshotBucket(tx *bolt.Tx, ns, name string) *bolt.Bucket {
	if b := recordBucket(tx, ns, bucketSnapshots); b != nil {
		return b.Bucket([]byte(name))
	}
	return nil
}

func createSnapshotBucket(tx *bolt.Tx, ns, name string) (*bolt.Bucket, error) {
	b, err := createRecordBucket(tx, ns, bucketSnapshots)
	if err != nil {
		return nil, err
	}
	return b.CreateBucketIfNotExists([]byte(name))
}

func getSnapshot(b *bolt.Bucket, key string) (snapshotRecord, error) {
	if b != nil {
		if v := b.Get([]byte(key)); v != nil {
			return decodeSnapshot(key, v)
		}
	}
	return snapshotRecord{}, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
}

func putSnapshot(b *bolt.Bucket, key string, r snapshotRecord) error {
	return b.Put([]byte(key), r.encode())
}

// addChild changes the child count of parent by delta; a missing parent
// (removed in the same collection) is skipped.
func addChild(b *bolt.Bucket, parent string, delta int64) error {
	if parent == "" {
		return nil
	}
	p, err := getSnapshot(b, parent)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	p.children = max(0, p.children+delta)
	return putSnapshot(b, parent, p)
}

// deleteSnapshotRecord removes key from b and unlinks it from its parent.
func deleteSnapshotRecord(b *bolt.Bucket, key string, r snapshotRecord) error {
	if err := b.Delete([]byte(key)); err != nil {
		return err
	}
	return addChild(b, r.parent, -1)
}

// inherited returns the labels passed on to the backing snapshotter.
func inherited(labels map[string]string) map[string]string {
	var out map[string]string
	for k, v := range labels {
		if strings.HasPrefix(k, inheritedSnapshotPrefix) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
