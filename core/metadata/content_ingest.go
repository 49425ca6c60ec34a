package metadata

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/namespaces"
)

// Ingest record fields.
const (
	tagIngestRef byte = 1 + iota
	tagIngestCreated
	tagIngestExpire
)

// ingestRecord ties a namespace's ingest ref to the backing ingest. The
// backing ref is "<namespace>/<sequence>/<ref>": unique across
// namespaces, and new after an abort, so a writer still holding the old
// backing ingest never meets a new one.
type ingestRecord struct {
	bref    string
	created time.Time
	expire  time.Time // zero when a lease holds the ingest
}

func (r ingestRecord) encode() []byte {
	e := newEncoder()
	e.string(tagIngestRef, r.bref)
	e.time(tagIngestCreated, r.created)
	e.time(tagIngestExpire, r.expire)
	return e.buf
}

func decodeIngest(ref string, v []byte) (ingestRecord, error) {
	var r ingestRecord
	err := decodeFields(v, func(tag byte, v []byte) (err error) {
		switch tag {
		case tagIngestRef:
			r.bref = string(v)
		case tagIngestCreated:
			r.created, err = decodeTime(v)
		case tagIngestExpire:
			r.expire, err = decodeTime(v)
		}
		return err
	})
	if err == nil && r.bref == "" {
		err = fmt.Errorf("%w: no backing ref", errCorrupt)
	}
	if err != nil {
		return r, fmt.Errorf("ingest %q: %w", ref, err)
	}
	return r, nil
}

func getIngest(tx *bolt.Tx, ns, ref string) (ingestRecord, error) {
	if b := recordBucket(tx, ns, bucketIngests); b != nil {
		if v := b.Get([]byte(ref)); v != nil {
			return decodeIngest(ref, v)
		}
	}
	return ingestRecord{}, fmt.Errorf("ingest %q: %w", ref, errdefs.ErrNotFound)
}

// Status reports the ingest ref of this namespace.
func (cs *contentStore) Status(ctx context.Context, ref string) (content.Status, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return content.Status{}, err
	}
	var rec ingestRecord
	err = cs.db.View(func(tx *bolt.Tx) error {
		rec, err = getIngest(tx, ns, ref)
		return err
	})
	if err != nil {
		return content.Status{}, err
	}
	st, err := cs.backend.Status(ctx, rec.bref)
	if err != nil {
		return content.Status{}, fmt.Errorf("ingest %q: %w", ref, err)
	}
	st.Ref = ref
	return st, nil
}

// ListStatuses lists this namespace's ingests matching any of filters
// (ref, expected). An ingest recorded but not yet started is left out.
func (cs *contentStore) ListStatuses(ctx context.Context, fs ...string) ([]content.Status, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, fmt.Errorf("ingest filters: %w", err)
	}
	brefs := map[string]string{}
	err = cs.db.View(func(tx *bolt.Tx) error {
		b := recordBucket(tx, ns, bucketIngests)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			rec, err := decodeIngest(string(k), v)
			if err != nil {
				return err
			}
			brefs[string(k)] = rec.bref
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	var out []content.Status
	for ref, bref := range brefs {
		st, err := cs.backend.Status(ctx, bref)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ingest %q: %w", ref, err)
		}
		st.Ref = ref
		if filter.Match(content.AdaptStatus(st)) {
			out = append(out, st)
		}
	}
	return out, nil
}

// Abort removes the ingest ref of this namespace and its backing data.
func (cs *contentStore) Abort(ctx context.Context, ref string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	// No lock: once the record is gone a sweep may abort the backing
	// ingest first, which only makes the Abort below find nothing.
	var rec ingestRecord
	err = cs.db.Update(func(tx *bolt.Tx) error {
		if rec, err = getIngest(tx, ns, ref); err != nil {
			return err
		}
		if err := recordBucket(tx, ns, bucketIngests).Delete([]byte(ref)); err != nil {
			return err
		}
		return removeFromLease(tx, ns, leaseOf(ctx), resourceIngests, ref)
	})
	if err != nil {
		return err
	}
	if err := cs.backend.Abort(ctx, rec.bref); err != nil && !errdefs.IsNotFound(err) {
		// The record is gone, so the collector aborts it later.
		cs.db.markDirty(dirtyIngest(rec.bref))
		return fmt.Errorf("abort ingest %q: %w", ref, err)
	}
	return nil
}

// Writer opens the ingest named by content.WithRef in this namespace. With
// a descriptor whose blob the namespace already records, or the backing
// store already holds, it records the blob here (attaching it to the
// context's lease) and returns errdefs.ErrAlreadyExists: no bytes need to
// move. Labels given to such a blob's Commit are therefore never applied;
// callers set them with Update.
func (cs *contentStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var o content.WriterOpts
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("writer option: %w", err)
		}
	}
	if err := validateWriterOpts(o); err != nil {
		return nil, err
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if o.Desc.Digest != "" {
		if shared, err := cs.share(ctx, ns, o.Desc); shared || err != nil {
			return nil, err
		}
	}
	// No lock from here: the ingest record is written before the backing
	// ingest exists, so a sweep never sees the backing ingest unrecorded.
	rec, created, err := cs.openIngestRecord(ctx, ns, o.Ref)
	if err != nil {
		return nil, err
	}
	w, err := cs.backend.Writer(ctx, content.WithRef(rec.bref), content.WithDescriptor(o.Desc))
	if err != nil {
		if created {
			cs.dropIngestRecord(ns, o.Ref, rec.bref)
		}
		if errors.Is(err, errdefs.ErrAlreadyExists) && o.Desc.Digest != "" {
			// Committed by another writer since share looked.
			if shared, serr := cs.share(ctx, ns, o.Desc); shared || serr != nil {
				return nil, serr
			}
		}
		return nil, err
	}
	return &namespacedWriter{cs: cs, w: w, ns: ns, ref: o.Ref, bref: rec.bref, lease: leaseOf(ctx)}, nil
}

func validateWriterOpts(o content.WriterOpts) error {
	if o.Ref == "" {
		return fmt.Errorf("writer needs a ref: %w", errdefs.ErrInvalidArgument)
	}
	if o.Desc.Size < 0 {
		return fmt.Errorf("ref %q: negative size %d: %w", o.Ref, o.Desc.Size, errdefs.ErrInvalidArgument)
	}
	if o.Desc.Digest != "" {
		if err := o.Desc.Digest.Validate(); err != nil {
			return fmt.Errorf("ref %q: digest %q: %v: %w", o.Ref, o.Desc.Digest, err, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// share records desc's blob in ns when the namespace or the backing store
// already has it, attaching it to the context's lease. It reports true,
// with an errdefs.ErrAlreadyExists error, when it did. It holds cs.mu
// shared, so the blob cannot be swept between being found and recorded.
func (cs *contentStore) share(ctx context.Context, ns string, desc ocispec.Descriptor) (bool, error) {
	cs.mu.RLock()
	defer cs.mu.RUnlock()
	lease := leaseOf(ctx)
	var recorded bool
	err := cs.db.View(func(tx *bolt.Tx) error {
		_, err := getBlob(tx, ns, desc.Digest)
		recorded = err == nil
		return nil
	})
	if err != nil {
		return false, err
	}
	var size int64
	if !recorded {
		info, err := cs.backend.Info(ctx, desc.Digest)
		if errdefs.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("content %s: %w", desc.Digest, err)
		}
		if desc.Size > 0 && desc.Size != info.Size {
			return false, fmt.Errorf("content %s is %d bytes, the descriptor says %d: %w", desc.Digest, info.Size, desc.Size, errdefs.ErrFailedPrecondition)
		}
		size = info.Size
	}
	if !recorded || lease != "" {
		err = cs.db.Update(func(tx *bolt.Tx) error {
			if err := recordBlob(tx, ns, desc.Digest, size, nil); err != nil && !errdefs.IsAlreadyExists(err) {
				return err
			}
			return addToLease(tx, ns, lease, resourceContent, desc.Digest.String())
		})
		if err != nil {
			return false, err
		}
	}
	return true, fmt.Errorf("content %s: %w", desc.Digest, errdefs.ErrAlreadyExists)
}

// recordBlob adds a blob record to ns, errdefs.ErrAlreadyExists when there
// is one.
func recordBlob(tx *bolt.Tx, ns string, dgst digest.Digest, size int64, lbls map[string]string) error {
	b, err := createRecordBucket(tx, ns, bucketContent)
	if err != nil {
		return err
	}
	if b.Get([]byte(dgst)) != nil {
		return fmt.Errorf("content %s: %w", dgst, errdefs.ErrAlreadyExists)
	}
	t := now()
	return b.Put([]byte(dgst), encodeBlob(content.Info{Size: size, CreatedAt: t, UpdatedAt: t, Labels: lbls}))
}

// openIngestRecord returns the record of ingest ref in ns, creating it
// when missing, and attaches it to the context's lease. An ingest without
// a lease gets (or has renewed) an expiry, after which the collector
// aborts it.
func (cs *contentStore) openIngestRecord(ctx context.Context, ns, ref string) (rec ingestRecord, created bool, err error) {
	err = cs.db.Update(func(tx *bolt.Tx) error {
		lease, err := contextLease(tx, ctx, ns)
		if err != nil {
			return err
		}
		b, err := createRecordBucket(tx, ns, bucketIngests)
		if err != nil {
			return err
		}
		if v := b.Get([]byte(ref)); v != nil {
			if rec, err = decodeIngest(ref, v); err != nil {
				return err
			}
		} else {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			rec = ingestRecord{bref: fmt.Sprintf("%s/%d/%s", ns, seq, ref), created: now()}
			created = true
		}
		rec.expire = time.Time{}
		if lease == "" {
			rec.expire = now().Add(cs.db.opts.ingestExpiry)
		}
		if err := b.Put([]byte(ref), rec.encode()); err != nil {
			return err
		}
		return addToLease(tx, ns, lease, resourceIngests, ref)
	})
	return rec, created, err
}

// dropIngestRecord removes a record openIngestRecord just created for a
// writer that could not be opened.
func (cs *contentStore) dropIngestRecord(ns, ref, bref string) {
	err := cs.db.Update(func(tx *bolt.Tx) error {
		rec, err := getIngest(tx, ns, ref)
		if err != nil || rec.bref != bref {
			return nil
		}
		return recordBucket(tx, ns, bucketIngests).Delete([]byte(ref))
	})
	if err != nil {
		cs.db.markDirty(dirtyIngest(bref))
	}
}
