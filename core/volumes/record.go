package volumes

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/metadata"
)

// bucketVolumes holds one key per volume name under v1/<namespace>/. Being
// in the namespace's bucket, a namespace that still has volumes cannot be
// deleted.
const bucketVolumes = "volumes"

// record is a volume as stored. JSON keeps it readable with bbolt tools and
// lets fields be added without a migration; records are small and read one
// at a time.
type record struct {
	Driver     string            `json:"driver"`
	Labels     map[string]string `json:"labels,omitempty"`
	Options    map[string]string `json:"options,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	Mountpoint string            `json:"mountpoint"`
	Anonymous  bool              `json:"anonymous,omitempty"`
	Users      []string          `json:"users,omitempty"`
	Mounted    []string          `json:"mounted,omitempty"`
}

func toRecord(v Volume) record {
	return record{
		Driver: v.Driver, Labels: v.Labels, Options: v.Options, CreatedAt: v.CreatedAt.UTC(),
		Mountpoint: v.Mountpoint, Anonymous: v.Anonymous, Users: v.Users, Mounted: v.Mounted,
	}
}

func (r record) volume(ns, name string) Volume {
	return Volume{
		Namespace: ns, Name: name, Driver: r.Driver, Labels: r.Labels, Options: r.Options,
		CreatedAt: r.CreatedAt, Mountpoint: r.Mountpoint, Anonymous: r.Anonymous,
		Users: r.Users, Mounted: r.Mounted,
	}
}

// getVolume reads ns/name inside tx; ok is false when there is none.
func getVolume(tx *bolt.Tx, ns, name string) (Volume, bool, error) {
	b := metadata.Bucket(tx, ns, bucketVolumes)
	if b == nil {
		return Volume{}, false, nil
	}
	raw := b.Get([]byte(name))
	if raw == nil {
		return Volume{}, false, nil
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return Volume{}, false, fmt.Errorf("volume %q: corrupt record: %w", name, err)
	}
	return r.volume(ns, name), true, nil
}

func putVolume(tx *bolt.Tx, v Volume) error {
	b, err := metadata.CreateBucket(tx, v.Namespace, bucketVolumes)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(toRecord(v))
	if err != nil {
		return err
	}
	return b.Put([]byte(v.Name), raw)
}

func deleteVolume(tx *bolt.Tx, ns, name string) error {
	b := metadata.Bucket(tx, ns, bucketVolumes)
	if b == nil {
		return nil
	}
	return b.Delete([]byte(name))
}

// listVolumes returns every volume of ns, sorted by name (bbolt's order).
func listVolumes(tx *bolt.Tx, ns string) ([]Volume, error) {
	b := metadata.Bucket(tx, ns, bucketVolumes)
	if b == nil {
		return nil, nil
	}
	var out []Volume
	err := b.ForEach(func(k, raw []byte) error {
		var r record
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("volume %q: corrupt record: %w", k, err)
		}
		out = append(out, r.volume(ns, string(k)))
		return nil
	})
	return out, err
}

// addID returns ids with id added, sorted and without duplicates.
func addID(ids []string, id string) []string {
	i, found := slices.BinarySearch(ids, id)
	if found {
		return ids
	}
	return slices.Insert(slices.Clone(ids), i, id)
}

// removeID returns ids without id.
func removeID(ids []string, id string) []string {
	i, found := slices.BinarySearch(ids, id)
	if !found {
		return ids
	}
	return slices.Delete(slices.Clone(ids), i, i+1)
}
