package metadata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/labels"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
)

// snapshotter is the namespaced view of one backing snapshotter. Each
// namespace has its own key space; a snapshot's backing key is
// "<namespace>/<sequence>/<key>", unique across namespaces and never
// re-used, so a key removed and created again gets a fresh layer while the
// collector still holds the old one. Labels live in bbolt; only labels
// under containerd.io/snapshot/ are passed on to the backing snapshotter.
type snapshotter struct {
	db      *DB
	name    string
	backend snapshots.Snapshotter

	// mu is held shared by operations that change the backing snapshotter
	// and then the records, and exclusively by the collector's sweep of
	// the backing snapshotter.
	mu sync.RWMutex

	// busy holds the namespaced keys being created or committed, so racing
	// calls on one key fail at once instead of doing the backing work
	// twice, and a commit cannot lose its key to a Remove.
	busyMu sync.Mutex
	busy   map[string]bool
}

var _ snapshots.Snapshotter = (*snapshotter)(nil)

func newSnapshotter(db *DB, name string, backend snapshots.Snapshotter) *snapshotter {
	return &snapshotter{db: db, name: name, backend: backend, busy: map[string]bool{}}
}

// reserve marks key of ns busy, reporting false when it already is.
func (s *snapshotter) reserve(ns, key string) (release func(), ok bool) {
	id := ns + "\x00" + key
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	if s.busy[id] {
		return nil, false
	}
	s.busy[id] = true
	return func() {
		s.busyMu.Lock()
		delete(s.busy, id)
		s.busyMu.Unlock()
	}, true
}

func (s *snapshotter) isBusy(ns, key string) bool {
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	return s.busy[ns+"\x00"+key]
}

// record reads the record of key in the namespace of ctx.
func (s *snapshotter) record(ctx context.Context, key string) (snapshotRecord, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return snapshotRecord{}, err
	}
	var rec snapshotRecord
	err = s.db.View(func(tx *bolt.Tx) error {
		rec, err = getSnapshot(snapshotBucket(tx, ns, s.name), key)
		return err
	})
	return rec, err
}

// Stat describes the snapshot key of this namespace.
func (s *snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	rec, err := s.record(ctx, key)
	if err != nil {
		return snapshots.Info{}, err
	}
	return rec.info(key), nil
}

// Usage is the backing snapshotter's usage of the snapshot.
func (s *snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	rec, err := s.record(ctx, key)
	if err != nil {
		return snapshots.Usage{}, err
	}
	return s.backend.Usage(ctx, rec.bkey)
}

// Mounts returns the mounts of an active or view snapshot.
func (s *snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	rec, err := s.record(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.backend.Mounts(ctx, rec.bkey)
}

// Update changes the labels of a snapshot (field paths "labels",
// "labels.<key>"; none means all labels).
func (s *snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return snapshots.Info{}, err
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	var before, after snapshotRecord
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := snapshotBucket(tx, ns, s.name)
		if before, err = getSnapshot(b, info.Name); err != nil {
			return err
		}
		after = before
		after.labels = cloneLabels(before.labels)
		for _, fp := range fieldpaths {
			var ok bool
			if after.labels, ok = applyLabelPath(after.labels, info.Labels, fp); !ok {
				return fmt.Errorf("snapshot %q: field %q cannot be updated (only labels): %w", info.Name, fp, errdefs.ErrInvalidArgument)
			}
		}
		if err := labels.ValidateAll(after.labels); err != nil {
			return fmt.Errorf("snapshot %q: %w", info.Name, err)
		}
		after.labels = cloneLabels(after.labels)
		after.updated = now()
		return putSnapshot(b, info.Name, after)
	})
	if err != nil {
		return snapshots.Info{}, err
	}
	if gcLabelsChanged(before.labels, after.labels) {
		s.db.markDirty(nil)
	}
	if inh := inherited(after.labels); !maps.Equal(inherited(before.labels), inh) {
		if _, err := s.backend.Update(ctx, snapshots.Info{Name: after.bkey, Labels: inh}, "labels"); err != nil {
			return snapshots.Info{}, fmt.Errorf("snapshot %q: pass labels to snapshotter %s: %w", info.Name, s.name, err)
		}
	}
	return after.info(info.Name), nil
}

// Prepare creates an active snapshot key on top of parent.
func (s *snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View creates a read-only snapshot key of parent.
func (s *snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

func applySnapshotOpts(opts []snapshots.Opt) (snapshots.Info, error) {
	var base snapshots.Info
	for _, opt := range opts {
		if err := opt(&base); err != nil {
			return base, fmt.Errorf("snapshot option: %w", err)
		}
	}
	return base, labels.ValidateAll(base.Labels)
}

// createPlan is what the first transaction of a creation decided.
type createPlan struct {
	bkey    string
	bparent string
}

// create makes an active or view snapshot: a transaction checks the key
// and parent and picks the backing key, the backing snapshotter creates
// the snapshot outside any transaction, and a second transaction records
// it. With the containerd.io/snapshot.ref label naming a committed
// snapshot this namespace, or another one with the same backing parent,
// already has, nothing is created: the snapshot is recorded under that
// name here and errdefs.ErrAlreadyExists returned.
func (s *snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	base, err := applySnapshotOpts(opts)
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	if key == "" {
		return nil, fmt.Errorf("snapshot key must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	release, ok := s.reserve(ns, key)
	if !ok {
		return nil, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrAlreadyExists)
	}
	defer release()
	plan, err := s.planCreate(ctx, ns, key, parent, base.Labels)
	if err != nil {
		return nil, err
	}
	bopts := []snapshots.Opt{snapshots.WithLabels(inherited(base.Labels))}
	var mounts []mount.Mount
	if kind == snapshots.KindView {
		mounts, err = s.backend.View(ctx, plan.bkey, plan.bparent, bopts...)
	} else {
		mounts, err = s.backend.Prepare(ctx, plan.bkey, plan.bparent, bopts...)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	rec := snapshotRecord{bkey: plan.bkey, parent: parent, kind: kind, labels: cloneLabels(base.Labels)}
	if err := s.recordCreated(ctx, ns, key, rec, plan.bparent); err != nil {
		if rerr := s.backend.Remove(ctx, plan.bkey); rerr != nil {
			slog.Warn("cannot remove unrecorded snapshot; the collector will", "snapshotter", s.name, "key", plan.bkey, "error", rerr)
			s.db.markDirty(dirtySnapshotter(s.name))
		}
		return nil, err
	}
	return mounts, nil
}

// planCreate is the first transaction of create. It returns
// errdefs.ErrAlreadyExists for a taken key or a snapshot.ref target that
// exists (after recording a shared one and attaching it to the lease).
func (s *snapshotter) planCreate(ctx context.Context, ns, key, parent string, lbls map[string]string) (createPlan, error) {
	var plan createPlan
	var exists error
	err := s.db.Update(func(tx *bolt.Tx) error {
		lease, err := contextLease(tx, ctx, ns)
		if err != nil {
			return err
		}
		b, err := createSnapshotBucket(tx, ns, s.name)
		if err != nil {
			return err
		}
		target := lbls[labelSnapshotRef]
		for _, name := range []string{target, key} {
			if name != "" && b.Get([]byte(name)) != nil {
				exists = fmt.Errorf("snapshot %q: %w", name, errdefs.ErrAlreadyExists)
				return addToLease(tx, ns, lease, s.resource(), name)
			}
		}
		if parent != "" {
			p, err := getSnapshot(b, parent)
			if err != nil {
				return fmt.Errorf("parent of snapshot %q: %w", key, err)
			}
			plan.bparent = p.bkey
		}
		if target != "" && target != key && !s.isBusy(ns, target) {
			if shared, ok := s.findShared(tx, ns, target, plan.bparent); ok {
				exists = fmt.Errorf("snapshot %q (shared): %w", target, errdefs.ErrAlreadyExists)
				return s.linkShared(tx, b, ns, lease, target, parent, shared, lbls)
			}
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		plan.bkey = fmt.Sprintf("%s/%d/%s", ns, seq, key)
		return nil
	})
	if err == nil {
		err = exists
	}
	return plan, err
}

func (s *snapshotter) resource() string { return resourceSnapshots + "/" + s.name }

var errFound = errors.New("found")

// findShared looks in the other namespaces for a committed snapshot named
// target, labelled as the snapshot.ref target, whose backing parent is
// bparent: the same layer on the same chain.
func (s *snapshotter) findShared(tx *bolt.Tx, ns, target, bparent string) (snapshotRecord, bool) {
	var found snapshotRecord
	err := eachNamespace(tx, func(other string, _ *bolt.Bucket) error {
		if other == ns {
			return nil
		}
		b := snapshotBucket(tx, other, s.name)
		r, err := getSnapshot(b, target)
		if err != nil || r.kind != snapshots.KindCommitted || r.labels[labelSnapshotRef] != target {
			return nil
		}
		if backingParent(b, r) != bparent {
			return nil
		}
		found = r
		return errFound
	})
	return found, errors.Is(err, errFound)
}

// backingParent is the backing key of r's parent in bucket b.
func backingParent(b *bolt.Bucket, r snapshotRecord) string {
	if r.parent == "" {
		return ""
	}
	p, err := getSnapshot(b, r.parent)
	if err != nil {
		return "\x00missing"
	}
	return p.bkey
}

// linkShared records another namespace's committed snapshot as target in
// this one: same backing key, this namespace's parent and labels (the
// other's filling in those not given).
func (s *snapshotter) linkShared(tx *bolt.Tx, b *bolt.Bucket, ns, lease, target, parent string, shared snapshotRecord, lbls map[string]string) error {
	merged := cloneLabels(shared.labels)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, lbls)
	t := now()
	rec := snapshotRecord{bkey: shared.bkey, parent: parent, kind: snapshots.KindCommitted, created: t, updated: t, labels: merged}
	if err := putSnapshot(b, target, rec); err != nil {
		return err
	}
	if err := addChild(b, parent, 1); err != nil {
		return err
	}
	return addToLease(tx, ns, lease, s.resource(), target)
}

// recordCreated is the second transaction of create.
func (s *snapshotter) recordCreated(ctx context.Context, ns, key string, rec snapshotRecord, bparent string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		lease, err := contextLease(tx, ctx, ns)
		if err != nil {
			return err
		}
		b, err := createSnapshotBucket(tx, ns, s.name)
		if err != nil {
			return err
		}
		if b.Get([]byte(key)) != nil {
			return fmt.Errorf("snapshot %q: %w", key, errdefs.ErrAlreadyExists)
		}
		if rec.parent != "" {
			p, err := getSnapshot(b, rec.parent)
			if err != nil || p.bkey != bparent {
				return fmt.Errorf("parent %q of snapshot %q was removed while it was being created: %w", rec.parent, key, errdefs.ErrNotFound)
			}
		}
		rec.created = now()
		rec.updated = rec.created
		if err := putSnapshot(b, key, rec); err != nil {
			return err
		}
		if err := addChild(b, rec.parent, 1); err != nil {
			return err
		}
		return addToLease(tx, ns, lease, s.resource(), key)
	})
}

// Commit turns the active snapshot key into the committed snapshot name.
// The backing commit (which measures the layer) runs outside any
// transaction.
func (s *snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	base, err := applySnapshotOpts(opts)
	if err != nil {
		return fmt.Errorf("committed snapshot %q: %w", name, err)
	}
	if name == "" {
		return fmt.Errorf("committed snapshot name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	// A name being created elsewhere is taken, as for Prepare, so racing
	// unpacks of one layer see errdefs.ErrAlreadyExists; a key being
	// committed elsewhere cannot be committed again.
	releaseName, ok := s.reserve(ns, name)
	if !ok {
		return fmt.Errorf("commit %q: snapshot %q is being created: %w", key, name, errdefs.ErrAlreadyExists)
	}
	defer releaseName()
	if key != name {
		releaseKey, ok := s.reserve(ns, key)
		if !ok {
			return fmt.Errorf("commit snapshot %q: it is being committed: %w", key, errdefs.ErrFailedPrecondition)
		}
		defer releaseKey()
	}
	active, nameKey, err := s.planCommit(ctx, ns, name, key)
	if err != nil {
		return err
	}
	if err := s.backend.Commit(ctx, nameKey, active.bkey, snapshots.WithLabels(inherited(base.Labels))); err != nil {
		return fmt.Errorf("commit snapshot %q: %w", key, err)
	}
	committed := snapshotRecord{bkey: nameKey, parent: active.parent, kind: snapshots.KindCommitted, labels: cloneLabels(base.Labels)}
	if err := s.recordCommitted(ctx, ns, name, key, active.bkey, committed); err != nil {
		s.db.markDirty(dirtySnapshotter(s.name)) // the backing snapshot has no record
		return err
	}
	return nil
}

// planCommit checks name and key and picks the committed backing key.
func (s *snapshotter) planCommit(ctx context.Context, ns, name, key string) (snapshotRecord, string, error) {
	var active snapshotRecord
	var nameKey string
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, err := contextLease(tx, ctx, ns); err != nil {
			return err
		}
		b, err := createSnapshotBucket(tx, ns, s.name)
		if err != nil {
			return err
		}
		if b.Get([]byte(name)) != nil {
			return fmt.Errorf("commit %q: snapshot %q: %w", key, name, errdefs.ErrAlreadyExists)
		}
		if active, err = getSnapshot(b, key); err != nil {
			return err
		}
		if active.kind != snapshots.KindActive {
			return fmt.Errorf("commit snapshot %q: it is %s, not active: %w", key, active.kind, errdefs.ErrFailedPrecondition)
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		nameKey = fmt.Sprintf("%s/%d/%s", ns, seq, name)
		return nil
	})
	return active, nameKey, err
}

// recordCommitted replaces the active record by the committed one. The
// parent's child count is unchanged: one child became another.
func (s *snapshotter) recordCommitted(ctx context.Context, ns, name, key, activeKey string, rec snapshotRecord) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := createSnapshotBucket(tx, ns, s.name)
		if err != nil {
			return err
		}
		active, err := getSnapshot(b, key)
		if err != nil || active.bkey != activeKey {
			return fmt.Errorf("snapshot %q was removed while it was being committed: %w", key, errdefs.ErrNotFound)
		}
		if err := b.Delete([]byte(key)); err != nil {
			return err
		}
		rec.created = now()
		rec.updated = rec.created
		if err := putSnapshot(b, name, rec); err != nil {
			return err
		}
		lease := leaseOf(ctx)
		if err := removeFromLease(tx, ns, lease, s.resource(), key); err != nil {
			return err
		}
		return addToLease(tx, ns, lease, s.resource(), name)
	})
}

// Remove deletes the snapshot key from this namespace. The backing
// snapshot goes at the next collection unless another namespace records
// it.
func (s *snapshotter) Remove(ctx context.Context, key string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.isBusy(ns, key) {
		return fmt.Errorf("remove snapshot %q: it is being created or committed: %w", key, errdefs.ErrFailedPrecondition)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := snapshotBucket(tx, ns, s.name)
		rec, err := getSnapshot(b, key)
		if err != nil {
			return err
		}
		if rec.children > 0 {
			return fmt.Errorf("remove snapshot %q: it has children: %w", key, errdefs.ErrFailedPrecondition)
		}
		if err := deleteSnapshotRecord(b, key, rec); err != nil {
			return err
		}
		return removeFromLease(tx, ns, leaseOf(ctx), s.resource(), key)
	})
	if err != nil {
		return err
	}
	s.db.markDirty(dirtySnapshotter(s.name))
	return nil
}

// Walk calls fn for each snapshot of this namespace matching any of
// filters (name, parent, kind, labels.<key>). fn runs outside the
// transaction, so it may call the snapshotter.
func (s *snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return fmt.Errorf("snapshot filters: %w", err)
	}
	var infos []snapshots.Info
	err = s.db.View(func(tx *bolt.Tx) error {
		b := snapshotBucket(tx, ns, s.name)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			rec, err := decodeSnapshot(string(k), v)
			if err != nil {
				return err
			}
			if info := rec.info(string(k)); filter.Match(adaptSnapshot(info)) {
				infos = append(infos, info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

func adaptSnapshot(info snapshots.Info) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "kind":
			return strings.ToLower(info.Kind.String()), len(fp) == 1
		case "name":
			return info.Name, len(fp) == 1
		case "parent":
			return info.Parent, len(fp) == 1 && info.Parent != ""
		case "labels":
			v, ok := info.Labels[strings.Join(fp[1:], ".")]
			return v, ok && len(fp) > 1
		}
		return "", false
	})
}

// Close does nothing: the backing snapshotter belongs to its plugin,
// which closes it after the database.
func (s *snapshotter) Close() error { return nil }
