package metadata

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// ObjectCounts counts the objects of every namespace by kind (the name of
// their bucket: "images", "containers", "leases", "content", "ingests",
// "snapshots"). Snapshots are counted over all snapshotters.
func (m *DB) ObjectCounts(ctx context.Context) (map[string]map[string]int64, error) {
	out := map[string]map[string]int64{}
	err := m.View(func(tx *bolt.Tx) error {
		return eachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
			counts := map[string]int64{}
			nb.ForEachBucket(func(kind []byte) error {
				switch string(kind) {
				case string(bucketLabels):
				case string(bucketSnapshots):
					counts[string(kind)] = countNested(nb.Bucket(kind))
				default:
					counts[string(kind)] = countChildren(nb.Bucket(kind))
				}
				return nil
			})
			out[ns] = counts
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

// countNested counts the entries of every sub-bucket of b.
func countNested(b *bolt.Bucket) int64 {
	var n int64
	b.ForEachBucket(func(k []byte) error {
		n += countChildren(b.Bucket(k))
		return nil
	})
	return n
}
