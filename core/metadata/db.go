// Package metadata keeps berth's namespaced records in one bbolt file:
// namespaces, images, containers, leases, and the namespaced views of blobs
// and snapshots. Transactions are short; nothing slow (I/O outside bbolt,
// network) happens inside one.
//
// Layout:
//
//	v1/                  schema bucket
//	  version            schema version (uvarint)
//	  <namespace>/       one bucket per namespace
//	    labels/          namespace labels
//	    images/ containers/ leases/ content/ snapshots/ ...
package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the version of the layout above. Open refuses a newer
// database and migrates an older one.
const SchemaVersion = 1

var (
	bucketV1      = []byte("v1")
	keyVersion    = []byte("version")
	bucketLabels  = []byte("labels")
	lockWaitLimit = time.Second
)

// ErrInUse is returned by Open when another process holds the database.
var ErrInUse = errors.New("in use by another berthd")

// DB is the metadata store.
type DB struct {
	bolt *bolt.DB
	path string
}

// Open opens (creating if needed) the database at path. When another berthd
// holds it, Open fails within about a second instead of waiting.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create metadata dir: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWaitLimit, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("metadata database %s: %w: %w", path, ErrInUse, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	m := &DB{bolt: db, path: path}
	if err := m.initSchema(); err != nil {
		db.Close()
		return nil, err
	}
	return m, nil
}

func (m *DB) initSchema() error {
	return m.bolt.Update(func(tx *bolt.Tx) error {
		v1, err := tx.CreateBucketIfNotExists(bucketV1)
		if err != nil {
			return err
		}
		if raw := v1.Get(keyVersion); raw != nil {
			v, n := binary.Uvarint(raw)
			if n <= 0 {
				return fmt.Errorf("metadata database %s: corrupt schema version", m.path)
			}
			if v > SchemaVersion {
				return fmt.Errorf("metadata database %s has schema version %d, newer than this berthd's %d: %w", m.path, v, SchemaVersion, errdefs.ErrFailedPrecondition)
			}
			return nil
		}
		return v1.Put(keyVersion, binary.AppendUvarint(nil, SchemaVersion))
	})
}

// Version returns the schema version recorded in the database.
func (m *DB) Version() (int, error) {
	var v uint64
	err := m.bolt.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketV1).Get(keyVersion)
		v, _ = binary.Uvarint(raw)
		return nil
	})
	return int(v), err
}

// Path is the database file.
func (m *DB) Path() string { return m.path }

// View runs fn in a read-only transaction.
func (m *DB) View(fn func(*bolt.Tx) error) error { return m.bolt.View(fn) }

// Update runs fn in a read-write transaction.
func (m *DB) Update(fn func(*bolt.Tx) error) error { return m.bolt.Update(fn) }

// Bolt exposes the underlying database to the packages that keep their own
// buckets in it.
func (m *DB) Bolt() *bolt.DB { return m.bolt }

// Close closes the database.
func (m *DB) Close() error { return m.bolt.Close() }

// namespaceBucket returns v1/<ns>, or nil.
func namespaceBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	v1 := tx.Bucket(bucketV1)
	if v1 == nil {
		return nil
	}
	return v1.Bucket([]byte(ns))
}

// createNamespaceBucket returns v1/<ns>, creating it: objects created in a
// namespace that does not exist yet create it, as in containerd.
func createNamespaceBucket(tx *bolt.Tx, ns string) (*bolt.Bucket, error) {
	v1, err := tx.CreateBucketIfNotExists(bucketV1)
	if err != nil {
		return nil, err
	}
	return v1.CreateBucketIfNotExists([]byte(ns))
}

// Bucket returns the bucket at v1/<ns>/<path...>, or nil when any part is
// missing.
func Bucket(tx *bolt.Tx, ns string, path ...string) *bolt.Bucket {
	b := namespaceBucket(tx, ns)
	for _, p := range path {
		if b == nil {
			return nil
		}
		b = b.Bucket([]byte(p))
	}
	return b
}

// CreateBucket returns the bucket at v1/<ns>/<path...>, creating every part.
func CreateBucket(tx *bolt.Tx, ns string, path ...string) (*bolt.Bucket, error) {
	b, err := createNamespaceBucket(tx, ns)
	if err != nil {
		return nil, err
	}
	for _, p := range path {
		if b, err = b.CreateBucketIfNotExists([]byte(p)); err != nil {
			return nil, err
		}
	}
	return b, nil
}
