package metadata

import (
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Object buckets of a namespace. Each holds one encoded record per object
// (see codec.go), except leases, which are buckets holding their record
// and the resources attached to them, and snapshots, which hold one bucket
// per snapshotter.
var (
	bucketImages     = []byte("images")
	bucketContainers = []byte("containers")
	bucketLeases     = []byte("leases")
	bucketContent    = []byte("content")
	bucketIngests    = []byte("ingests")
	bucketSnapshots  = []byte("snapshots")
)

// Label keys with a meaning to the metadata store and its collector.
const (
	labelGCRoot        = "containerd.io/gc.root"
	labelGCPrefix      = "containerd.io/gc."
	labelGCRefContent  = "containerd.io/gc.ref.content"
	labelGCRefSnapshot = "containerd.io/gc.ref.snapshot."
	labelGCExpire      = "containerd.io/gc.expire"
	// labelSnapshotRef names the committed snapshot an unpacker wants; a
	// committed snapshot of that name with the same parent, in any
	// namespace, is re-used instead of unpacking the layer again.
	labelSnapshotRef = "containerd.io/snapshot.ref"
	// inheritedSnapshotPrefix marks snapshot labels passed on to the
	// backing snapshotter; all other labels live in bbolt only.
	inheritedSnapshotPrefix = "containerd.io/snapshot/"
)

// recordBucket returns the object bucket kind of namespace ns, or nil.
func recordBucket(tx *bolt.Tx, ns string, kind []byte) *bolt.Bucket {
	b := namespaceBucket(tx, ns)
	if b == nil {
		return nil
	}
	return b.Bucket(kind)
}

// createRecordBucket returns the object bucket kind of ns, creating it
// and the namespace.
func createRecordBucket(tx *bolt.Tx, ns string, kind []byte) (*bolt.Bucket, error) {
	b, err := createNamespaceBucket(tx, ns)
	if err != nil {
		return nil, err
	}
	return b.CreateBucketIfNotExists(kind)
}

// eachNamespace calls fn with the name and bucket of every namespace.
func eachNamespace(tx *bolt.Tx, fn func(ns string, b *bolt.Bucket) error) error {
	v1 := tx.Bucket(bucketV1)
	if v1 == nil {
		return nil
	}
	c := v1.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		if err := fn(string(k), v1.Bucket(k)); err != nil {
			return err
		}
	}
	return nil
}

// applyLabelPath applies one label field path: "labels" replaces every
// label with those of in, "labels.<key>" sets key to in[key], removing it
// when that is empty or absent. It reports false for any other path.
func applyLabelPath(labels, in map[string]string, path string) (map[string]string, bool) {
	if path == "labels" {
		out := make(map[string]string, len(in))
		for k, v := range in {
			if v != "" {
				out[k] = v
			}
		}
		return out, true
	}
	key, ok := strings.CutPrefix(path, "labels.")
	if !ok || key == "" {
		return labels, false
	}
	if labels == nil {
		labels = map[string]string{}
	}
	if v := in[key]; v != "" {
		labels[key] = v
	} else {
		delete(labels, key)
	}
	return labels, true
}

// gcLabelsChanged reports whether a label the collector reads changed
// between before and after: dropping a reference may free what it held.
func gcLabelsChanged(before, after map[string]string) bool {
	for k, v := range before {
		if strings.HasPrefix(k, labelGCPrefix) && after[k] != v {
			return true
		}
	}
	for k := range after {
		if _, had := before[k]; !had && strings.HasPrefix(k, labelGCPrefix) {
			return true
		}
	}
	return false
}

// cloneLabels copies labels, returning nil for an empty set.
func cloneLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
