package metadata

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// ObjectCounts counts the objects of every namespace by kind (the name of
// their bucket: "images", "containers", "leases", ...).
func (m *DB) ObjectCounts(ctx context.Context) (map[string]map[string]int64, error) {
	out := map[string]map[string]int64{}
	err := m.View(func(tx *bolt.Tx) error {
		v1 := tx.Bucket(bucketV1)
		return v1.ForEach(func(ns, v []byte) error {
			if v != nil {
				return nil
			}
			counts := map[string]int64{}
			nb := v1.Bucket(ns)
			nb.ForEach(func(kind, v []byte) error {
				if v == nil && string(kind) != string(bucketLabels) {
					counts[string(kind)] = countChildren(nb.Bucket(kind))
				}
				return nil
			})
			out[string(ns)] = counts
			return nil
		})
	})
	return out, err
}

// countChildren counts the direct entries of b: one per object.
func countChildren(b *bolt.Bucket) int64 {
	var n int64
	b.ForEach(func(k, v []byte) error {
		n++
		return nil
	})
	return n
}
