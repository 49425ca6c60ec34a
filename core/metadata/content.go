package metadata

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/labels"
	"github.com/berthd/berth/core/namespaces"
)

// contentStore is the namespaced view of the backing content store. Blobs
// are stored once in the backing store; each namespace has its own record
// of the blobs it can see, with its own labels. The policy is containerd's
// "shared" one: asking to write a blob the backing store already has makes
// it visible in the namespace at once (the Writer call records it and
// returns errdefs.ErrAlreadyExists), so a blob is never fetched twice.
type contentStore struct {
	db      *DB
	backend content.Store
	// mu is held shared from finding or committing a blob in the backing
	// store until it is recorded (Commit, and Writer finding the blob
	// already stored), and exclusively by the collector's backing-store
	// sweep, which so never removes a blob about to be recorded.
	mu sync.RWMutex
}

var _ content.Store = (*contentStore)(nil)

func newContentStore(db *DB, backend content.Store) *contentStore {
	return &contentStore{db: db, backend: backend}
}

// Blob record fields.
const (
	tagBlobSize byte = 1 + iota
	tagBlobCreated
	tagBlobUpdated
	tagBlobLabels
)

func encodeBlob(info content.Info) []byte {
	e := newEncoder()
	e.int(tagBlobSize, info.Size)
	e.time(tagBlobCreated, info.CreatedAt)
	e.time(tagBlobUpdated, info.UpdatedAt)
	e.strings(tagBlobLabels, info.Labels)
	return e.buf
}

func decodeBlob(dgst digest.Digest, v []byte) (content.Info, error) {
	info := content.Info{Digest: dgst}
	err := decodeFields(v, func(tag byte, v []byte) (err error) {
		switch tag {
		case tagBlobSize:
			info.Size, err = decodeInt(v)
		case tagBlobCreated:
			info.CreatedAt, err = decodeTime(v)
		case tagBlobUpdated:
			info.UpdatedAt, err = decodeTime(v)
		case tagBlobLabels:
			info.Labels, err = decodeStrings(v)
		}
		return err
	})
	if err != nil {
		return info, fmt.Errorf("content %s: %w", dgst, err)
	}
	return info, nil
}

func getBlob(tx *bolt.Tx, ns string, dgst digest.Digest) (content.Info, error) {
	if b := recordBucket(tx, ns, bucketContent); b != nil {
		if v := b.Get([]byte(dgst)); v != nil {
			return decodeBlob(dgst, v)
		}
	}
	return content.Info{}, fmt.Errorf("content %s: %w", dgst, errdefs.ErrNotFound)
}

// Info describes a blob as this namespace records it.
func (cs *contentStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return content.Info{}, err
	}
	var info content.Info
	err = cs.db.View(func(tx *bolt.Tx) error {
		info, err = getBlob(tx, ns, dgst)
		return err
	})
	return info, err
}

// Update changes the labels of a blob in this namespace (field paths
// "labels" and "labels.<key>"; none means all labels).
func (cs *contentStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return content.Info{}, err
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	var updated content.Info
	var refsChanged bool
	err = cs.db.Update(func(tx *bolt.Tx) error {
		cur, err := getBlob(tx, ns, info.Digest)
		if err != nil {
			return err
		}
		updated = cur
		updated.Labels = cloneLabels(cur.Labels)
		for _, fp := range fieldpaths {
			var ok bool
			if updated.Labels, ok = applyLabelPath(updated.Labels, info.Labels, fp); !ok {
				return fmt.Errorf("content %s: field %q cannot be updated (only labels): %w", info.Digest, fp, errdefs.ErrInvalidArgument)
			}
		}
		if err := labels.ValidateAll(updated.Labels); err != nil {
			return fmt.Errorf("content %s: %w", info.Digest, err)
		}
		updated.Labels = cloneLabels(updated.Labels)
		updated.UpdatedAt = now()
		refsChanged = gcLabelsChanged(cur.Labels, updated.Labels)
		return recordBucket(tx, ns, bucketContent).Put([]byte(info.Digest), encodeBlob(updated))
	})
	if err != nil {
		return content.Info{}, err
	}
	if refsChanged {
		cs.db.markDirty(nil)
	}
	return updated, nil
}

// Walk calls fn for each blob of this namespace matching any of filters
// (digest, size, labels.<key>). fn runs outside the transaction.
func (cs *contentStore) Walk(ctx context.Context, fn content.WalkFunc, fs ...string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return fmt.Errorf("content filters: %w", err)
	}
	var infos []content.Info
	err = cs.db.View(func(tx *bolt.Tx) error {
		b := recordBucket(tx, ns, bucketContent)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			info, err := decodeBlob(digest.Digest(k), v)
			if err != nil {
				return err
			}
			if filter.Match(content.AdaptInfo(info)) {
				infos = append(infos, info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the blob from this namespace. The bytes stay in the
// backing store while another namespace records the blob; otherwise the
// next collection removes them.
func (cs *contentStore) Delete(ctx context.Context, dgst digest.Digest) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = cs.db.Update(func(tx *bolt.Tx) error {
		b := recordBucket(tx, ns, bucketContent)
		if b == nil || b.Get([]byte(dgst)) == nil {
			return fmt.Errorf("content %s: %w", dgst, errdefs.ErrNotFound)
		}
		if err := b.Delete([]byte(dgst)); err != nil {
			return err
		}
		return removeFromLease(tx, ns, leaseOf(ctx), resourceContent, dgst.String())
	})
	if err != nil {
		return err
	}
	cs.db.markDirty(dirtyBlob(dgst))
	return nil
}

// ReaderAt opens a blob this namespace records.
func (cs *contentStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if _, err := cs.Info(ctx, desc.Digest); err != nil {
		return nil, err
	}
	return cs.backend.ReaderAt(ctx, desc)
}
