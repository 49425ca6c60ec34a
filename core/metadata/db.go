// Package metadata keeps berth's namespaced records in one bbolt file:
// namespaces, images, containers, leases, and the namespaced views of the
// backing content store and snapshotters, with the garbage collector that
// removes what nothing references. Transactions are short; nothing slow
// (I/O outside bbolt, network) happens inside one.
//
// Layout:
//
//	v1/                      schema bucket
//	  version                schema version (uvarint)
//	  <namespace>/           one bucket per namespace
//	    labels/              namespace labels
//	    images/              name -> image record
//	    containers/          id -> container record
//	    content/             digest -> blob record (size, times, labels)
//	    ingests/             ref -> ingest record (backing ref, expiry)
//	    snapshots/<name>/    key -> snapshot record (backing key, parent, ...)
//	    leases/<id>/         info -> lease record; content/, ingests/,
//	                         snapshots/<name>/ hold the lease's resources
//
// Records are compact encoded values (codec.go).
//
// Lifecycle: Open the file, Init it with the backing content store and
// snapshotters, use the stores (ContentStore, Snapshotter, Images,
// Containers, Leases, Namespaces), Close. Deletions mark the database dirty
// and a scheduler collects garbage shortly after, batched; GarbageCollect
// runs a full collection on demand.
package metadata

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/snapshots"
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
	opts options

	// stores holds the backing stores attached by Init; nil before.
	stores atomic.Pointer[backingStores]

	// collectMu keeps collections one at a time, whoever starts them.
	collectMu sync.Mutex
	dirtyMu   sync.Mutex
	dirty     dirtyState
	sched     *gc.Scheduler
	closeOnce sync.Once
	closeErr  error
}

// backingStores are the namespaced views over the stores Init attached.
type backingStores struct {
	content      *contentStore // nil without a content store
	snapshotters map[string]*snapshotter
}

// dirtyState records what may have become garbage since the last
// collection, so a scheduled collection only looks there.
type dirtyState struct {
	// all is set when the backing stores were just attached: after a
	// crash they may hold objects whose records were never written, so
	// every store is walked.
	all bool
	// blobs and brefs are blobs and backing ingests whose records were
	// removed: removed from the content store unless still recorded.
	blobs map[digest.Digest]bool
	brefs map[string]bool
	// snapshotters are walked for unreferenced snapshots.
	snapshotters map[string]bool
}

// Opt configures Open.
type Opt func(*options)

type options struct {
	gc           gc.Config
	ingestExpiry time.Duration
}

// DefaultIngestExpiry is how long an ingest written without a lease is
// kept after its last Writer call before garbage collection aborts it.
const DefaultIngestExpiry = 24 * time.Hour

// WithGCConfig sets when scheduled garbage collections run.
func WithGCConfig(cfg gc.Config) Opt {
	return func(o *options) { o.gc = cfg }
}

// WithIngestExpiry sets how long an ingest without a lease survives its
// last Writer call (DefaultIngestExpiry when not set).
func WithIngestExpiry(d time.Duration) Opt {
	return func(o *options) { o.ingestExpiry = d }
}

// Open opens (creating if needed) the database at path. When another berthd
// holds it, Open fails within about a second instead of waiting. The
// garbage collection scheduler starts here; until Init attaches backing
// stores, collections only remove records.
func Open(path string, opts ...Opt) (*DB, error) {
	o := options{ingestExpiry: DefaultIngestExpiry}
	for _, opt := range opts {
		opt(&o)
	}
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
	m := &DB{bolt: db, path: path, opts: o}
	if err := m.initSchema(); err != nil {
		db.Close()
		return nil, err
	}
	m.sched = gc.NewScheduler(m.scheduledCollect, o.gc)
	return m, nil
}

// Init attaches the backing stores: cs, the content store the namespaced
// ContentStore works over (nil for none), and the snapshotters by name
// (the name the namespaced Snapshotter, the gc.ref.snapshot.<name> labels
// and lease resources "snapshots/<name>" use). It may be called once. The
// first collection after Init walks every backing store, removing what a
// crash left without a record. The DB never closes the backing stores:
// their owners do, after closing the DB.
func (m *DB) Init(ctx context.Context, cs content.Store, snapshotters map[string]snapshots.Snapshotter) error {
	b := &backingStores{snapshotters: make(map[string]*snapshotter, len(snapshotters))}
	if cs != nil {
		b.content = newContentStore(m, cs)
	}
	for name, sn := range snapshotters {
		if name == "" || strings.Contains(name, "/") || sn == nil {
			return fmt.Errorf("snapshotter %q: the name must be non-empty without '/', the snapshotter non-nil: %w", name, errdefs.ErrInvalidArgument)
		}
		b.snapshotters[name] = newSnapshotter(m, name, sn)
	}
	if !m.stores.CompareAndSwap(nil, b) {
		return fmt.Errorf("metadata database %s: backing stores already attached: %w", m.path, errdefs.ErrFailedPrecondition)
	}
	m.dirtyMu.Lock()
	m.dirty.all = true
	m.dirtyMu.Unlock()
	m.sched.Trigger()
	return nil
}

// ContentStore returns the namespaced content store, or nil when Init gave
// no backing content store.
func (m *DB) ContentStore() content.Store {
	if b := m.stores.Load(); b != nil && b.content != nil {
		return b.content
	}
	return nil
}

// Snapshotter returns the namespaced view of the snapshotter name, or nil
// when Init attached none by that name.
func (m *DB) Snapshotter(name string) snapshots.Snapshotter {
	if b := m.stores.Load(); b != nil {
		if s, ok := b.snapshotters[name]; ok {
			return s
		}
	}
	return nil
}

// Snapshotters returns the namespaced views of every attached snapshotter.
func (m *DB) Snapshotters() map[string]snapshots.Snapshotter {
	out := map[string]snapshots.Snapshotter{}
	if b := m.stores.Load(); b != nil {
		for name, s := range b.snapshotters {
			out[name] = s
		}
	}
	return out
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

// Close stops garbage collection (a run in progress is cancelled and
// waited for) and closes the database. It may be called more than once.
func (m *DB) Close() error {
	m.closeOnce.Do(func() {
		m.sched.Close()
		m.collectMu.Lock()
		defer m.collectMu.Unlock()
		m.closeErr = m.bolt.Close()
	})
	return m.closeErr
}

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
