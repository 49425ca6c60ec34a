package metadata

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/labels"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/namespaces"
)

// Lease resource types.
const (
	resourceContent   = "content"
	resourceIngests   = "ingests"
	resourceSnapshots = "snapshots"
)

var keyLeaseInfo = []byte("info")

// Lease record fields.
const (
	tagLeaseCreated byte = 1 + iota
	tagLeaseLabels
)

// leaseManager implements leases.Manager over the database.
type leaseManager struct{ db *DB }

var _ leases.Manager = (*leaseManager)(nil)

// Leases returns the lease manager. Resources created while a context
// carries a lease (leases.WithLease) are attached to it by the content
// store and the snapshotters.
func (m *DB) Leases() leases.Manager { return &leaseManager{db: m} }

// Create makes a lease. Without leases.WithID it gets a random id. The
// expiry label, when set, must be an RFC 3339 time.
func (lm *leaseManager) Create(ctx context.Context, opts ...leases.Opt) (leases.Lease, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return leases.Lease{}, err
	}
	var l leases.Lease
	for _, opt := range opts {
		if err := opt(&l); err != nil {
			return leases.Lease{}, fmt.Errorf("lease option: %w", err)
		}
	}
	if l.ID == "" {
		l.ID = randomLeaseID()
	}
	if err := validateLease(l); err != nil {
		return leases.Lease{}, err
	}
	l.CreatedAt = now()
	enc := newEncoder()
	enc.time(tagLeaseCreated, l.CreatedAt)
	enc.strings(tagLeaseLabels, l.Labels)
	err = lm.db.Update(func(tx *bolt.Tx) error {
		lb, err := createRecordBucket(tx, ns, bucketLeases)
		if err != nil {
			return err
		}
		b, err := lb.CreateBucket([]byte(l.ID))
		if err != nil {
			return fmt.Errorf("lease %q: %w", l.ID, errdefs.ErrAlreadyExists)
		}
		return b.Put(keyLeaseInfo, enc.buf)
	})
	if err != nil {
		return leases.Lease{}, err
	}
	return l, nil
}

// validLeaseID accepts what containerd clients use as lease ids beyond
// identifiers: ctr's generated ids ("<nanoseconds>-<base64url>", which
// may hold "--" or "_-") and `ctr images mount`'s, the mount target path.
// containerd itself accepts any id; berth refuses only empty ones, spaces
// and control characters, and more than a path's length.
func validLeaseID(id string) bool {
	if id == "" || len(id) > 4096 {
		return false
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// randomLeaseID is 128 random bits in hex: a valid identifier.
func randomLeaseID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validateLease(l leases.Lease) error {
	if err := identifiers.Validate(l.ID); err != nil && !validLeaseID(l.ID) {
		return fmt.Errorf("lease id: %w", err)
	}
	if err := labels.ValidateAll(l.Labels); err != nil {
		return fmt.Errorf("lease %q: %w", l.ID, err)
	}
	if v, ok := l.Labels[leases.LabelExpire]; ok {
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			return fmt.Errorf("lease %q: label %s=%q is not an RFC 3339 time: %w", l.ID, leases.LabelExpire, v, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// Delete removes a lease; what it held is collected unless something else
// references it. With leases.SynchronousDelete, Delete returns after that
// collection.
func (lm *leaseManager) Delete(ctx context.Context, lease leases.Lease, opts ...leases.DeleteOpt) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	var o leases.DeleteOptions
	for _, opt := range opts {
		if err := opt(ctx, &o); err != nil {
			return fmt.Errorf("lease delete option: %w", err)
		}
	}
	err = lm.db.Update(func(tx *bolt.Tx) error {
		lb := recordBucket(tx, ns, bucketLeases)
		if lb == nil || lb.Bucket([]byte(lease.ID)) == nil {
			return fmt.Errorf("lease %q: %w", lease.ID, errdefs.ErrNotFound)
		}
		return lb.DeleteBucket([]byte(lease.ID))
	})
	if err != nil {
		return err
	}
	lm.db.markDirty(nil)
	if o.Synchronous {
		return lm.db.waitCollect(ctx, "lease "+lease.ID)
	}
	return nil
}

// List returns the leases matching any of filters (id, labels.<key>).
func (lm *leaseManager) List(ctx context.Context, fs ...string) ([]leases.Lease, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, fmt.Errorf("lease filters: %w", err)
	}
	var out []leases.Lease
	err = lm.db.View(func(tx *bolt.Tx) error {
		lb := recordBucket(tx, ns, bucketLeases)
		if lb == nil {
			return nil
		}
		return lb.ForEachBucket(func(k []byte) error {
			l, err := readLease(string(k), lb.Bucket(k))
			if err != nil {
				return err
			}
			if filter.Match(adaptLease(l)) {
				out = append(out, l)
			}
			return nil
		})
	})
	return out, err
}

func readLease(id string, b *bolt.Bucket) (leases.Lease, error) {
	l := leases.Lease{ID: id}
	err := decodeFields(b.Get(keyLeaseInfo), func(tag byte, v []byte) (err error) {
		switch tag {
		case tagLeaseCreated:
			l.CreatedAt, err = decodeTime(v)
		case tagLeaseLabels:
			l.Labels, err = decodeStrings(v)
		}
		return err
	})
	if err != nil {
		return l, fmt.Errorf("lease %q: %w", id, err)
	}
	return l, nil
}

func adaptLease(l leases.Lease) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		switch {
		case len(fp) == 1 && fp[0] == "id":
			return l.ID, true
		case len(fp) > 1 && fp[0] == "labels":
			v, ok := l.Labels[strings.Join(fp[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

// AddResource attaches r to the lease; the resource need not exist yet.
func (lm *leaseManager) AddResource(ctx context.Context, lease leases.Lease, r leases.Resource) error {
	return lm.changeResource(ctx, lease, r, true)
}

// DeleteResource detaches r from the lease.
func (lm *leaseManager) DeleteResource(ctx context.Context, lease leases.Lease, r leases.Resource) error {
	if err := lm.changeResource(ctx, lease, r, false); err != nil {
		return err
	}
	lm.db.markDirty(nil)
	return nil
}

func (lm *leaseManager) changeResource(ctx context.Context, lease leases.Lease, r leases.Resource, add bool) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	path, key, err := parseResource(r)
	if err != nil {
		return err
	}
	return lm.db.Update(func(tx *bolt.Tx) error {
		lb, err := leaseBucket(tx, ns, lease.ID)
		if err != nil {
			return err
		}
		if add {
			return putResource(lb, path, key)
		}
		return deleteResource(lb, path, key)
	})
}

// ListResources lists what the lease holds.
func (lm *leaseManager) ListResources(ctx context.Context, lease leases.Lease) ([]leases.Resource, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	var out []leases.Resource
	err = lm.db.View(func(tx *bolt.Tx) error {
		lb, err := leaseBucket(tx, ns, lease.ID)
		if err != nil {
			return err
		}
		return eachResource(lb, func(typ, key string) {
			out = append(out, leases.Resource{ID: key, Type: typ})
		})
	})
	return out, err
}

// parseResource checks a resource and returns the bucket path it is kept
// under in a lease and its key. Types: "content" (a digest), "ingests" (a
// ref) and "snapshots/<snapshotter>" (a key).
func parseResource(r leases.Resource) ([]string, string, error) {
	if r.ID == "" {
		return nil, "", fmt.Errorf("lease resource of type %q has no id: %w", r.Type, errdefs.ErrInvalidArgument)
	}
	parts := strings.Split(r.Type, "/")
	switch {
	case r.Type == resourceContent:
		d, err := digest.Parse(r.ID)
		if err != nil {
			return nil, "", fmt.Errorf("content resource %q: %v: %w", r.ID, err, errdefs.ErrInvalidArgument)
		}
		return parts, d.String(), nil
	case r.Type == resourceIngests:
		return parts, r.ID, nil
	case parts[0] == resourceSnapshots:
		if len(parts) != 2 || parts[1] == "" {
			return nil, "", fmt.Errorf("snapshot resource type %q must be snapshots/<snapshotter>: %w", r.Type, errdefs.ErrInvalidArgument)
		}
		return parts, r.ID, nil
	}
	return nil, "", fmt.Errorf("lease resource type %q (want content, ingests or snapshots/<snapshotter>): %w", r.Type, errdefs.ErrNotImplemented)
}

func leaseBucket(tx *bolt.Tx, ns, id string) (*bolt.Bucket, error) {
	if lb := recordBucket(tx, ns, bucketLeases); lb != nil {
		if b := lb.Bucket([]byte(id)); b != nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("lease %q: %w", id, errdefs.ErrNotFound)
}

func putResource(lb *bolt.Bucket, path []string, key string) error {
	b := lb
	for _, p := range path {
		var err error
		if b, err = b.CreateBucketIfNotExists([]byte(p)); err != nil {
			return err
		}
	}
	return b.Put([]byte(key), nil)
}

func deleteResource(lb *bolt.Bucket, path []string, key string) error {
	b := lb
	for _, p := range path {
		if b = b.Bucket([]byte(p)); b == nil {
			return nil
		}
	}
	return b.Delete([]byte(key))
}

// eachResource calls fn for every resource of a lease, with its type and
// key.
func eachResource(lb *bolt.Bucket, fn func(typ, key string)) error {
	for _, typ := range []string{resourceContent, resourceIngests} {
		if b := lb.Bucket([]byte(typ)); b != nil {
			b.ForEach(func(k, _ []byte) error {
				fn(typ, string(k))
				return nil
			})
		}
	}
	sb := lb.Bucket([]byte(resourceSnapshots))
	if sb == nil {
		return nil
	}
	return sb.ForEachBucket(func(name []byte) error {
		typ := resourceSnapshots + "/" + string(name)
		return sb.Bucket(name).ForEach(func(k, _ []byte) error {
			fn(typ, string(k))
			return nil
		})
	})
}

// contextLease returns the id of the lease ctx carries, checking that it
// exists in ns; "" when ctx carries none.
func contextLease(tx *bolt.Tx, ctx context.Context, ns string) (string, error) {
	id, ok := leases.FromContext(ctx)
	if !ok {
		return "", nil
	}
	if _, err := leaseBucket(tx, ns, id); err != nil {
		return "", err
	}
	return id, nil
}

// addToLease attaches a resource to lease id in ns; nothing when id is "".
func addToLease(tx *bolt.Tx, ns, id, typ, key string) error {
	if id == "" {
		return nil
	}
	lb, err := leaseBucket(tx, ns, id)
	if err != nil {
		return err
	}
	return putResource(lb, strings.Split(typ, "/"), key)
}

// removeFromLease detaches a resource from lease id, if both exist.
func removeFromLease(tx *bolt.Tx, ns, id, typ, key string) error {
	if id == "" {
		return nil
	}
	lb, err := leaseBucket(tx, ns, id)
	if err != nil {
		return nil // the lease is gone: nothing to detach
	}
	return deleteResource(lb, strings.Split(typ, "/"), key)
}

// leaseOf returns the lease ctx carries, "" for none.
func leaseOf(ctx context.Context) string {
	id, _ := leases.FromContext(ctx)
	return id
}
