package metadata

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/labels"
)

// namespacedWriter writes a namespace's ingest into its backing ingest and
// records the blob in the namespace on commit.
type namespacedWriter struct {
	cs    *contentStore
	w     content.Writer
	ns    string
	ref   string
	bref  string
	lease string // the lease the ingest was attached to, if any
}

func (nw *namespacedWriter) Write(p []byte) (int, error) { return nw.w.Write(p) }
func (nw *namespacedWriter) Close() error                { return nw.w.Close() }
func (nw *namespacedWriter) Digest() digest.Digest       { return nw.w.Digest() }
func (nw *namespacedWriter) Truncate(size int64) error   { return nw.w.Truncate(size) }

func (nw *namespacedWriter) Status() (content.Status, error) {
	st, err := nw.w.Status()
	st.Ref = nw.ref
	return st, err
}

// Commit verifies and commits the backing ingest, then records the blob in
// the namespace with the labels of opts, attaching it to the lease of ctx
// (or, when ctx has none, to the lease the writer was opened under). The
// backing commit happens outside any transaction; a crash between it and
// the record leaves a blob without a record, which the collector removes.
// errdefs.ErrAlreadyExists means the namespace already had the blob.
func (nw *namespacedWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	var base content.Info
	for _, opt := range opts {
		if err := opt(&base); err != nil {
			nw.w.Close()
			return fmt.Errorf("commit ref %q: %w", nw.ref, err)
		}
	}
	if err := labels.ValidateAll(base.Labels); err != nil {
		nw.w.Close()
		return fmt.Errorf("commit ref %q: %w", nw.ref, err)
	}
	st, err := nw.w.Status()
	if err != nil {
		nw.w.Close()
		return fmt.Errorf("commit ref %q: %w", nw.ref, err)
	}
	nw.cs.mu.RLock()
	defer nw.cs.mu.RUnlock()
	if err := nw.w.Commit(ctx, size, expected); err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	dgst := expected
	if dgst == "" {
		dgst = nw.w.Digest()
	}
	lease := nw.lease
	if id := leaseOf(ctx); id != "" {
		lease = id
	}
	var exists error
	err = nw.cs.db.Update(func(tx *bolt.Tx) error {
		err := recordBlob(tx, nw.ns, dgst, st.Offset, cloneLabels(base.Labels))
		if errdefs.IsAlreadyExists(err) {
			exists = err // reported after the transaction commits
		} else if err != nil {
			return err
		}
		if err := nw.forgetIngest(tx); err != nil {
			return err
		}
		return addToLease(tx, nw.ns, lease, resourceContent, dgst.String())
	})
	if err != nil {
		return fmt.Errorf("record content %s: %w", dgst, err)
	}
	return exists
}

// forgetIngest removes the committed ingest's record and lease entry; a
// record that now names another backing ingest (aborted and reopened
// meanwhile) is left alone.
func (nw *namespacedWriter) forgetIngest(tx *bolt.Tx) error {
	if err := removeFromLease(tx, nw.ns, nw.lease, resourceIngests, nw.ref); err != nil {
		return err
	}
	rec, err := getIngest(tx, nw.ns, nw.ref)
	if err != nil || rec.bref != nw.bref {
		return nil
	}
	return recordBucket(tx, nw.ns, bucketIngests).Delete([]byte(nw.ref))
}
