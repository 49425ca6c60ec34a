package metadata

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/labels"
)

// Namespaces manages the namespaces themselves.
type Namespaces struct{ db *DB }

// Namespaces returns the namespace store.
func (m *DB) Namespaces() *Namespaces { return &Namespaces{db: m} }

// Create makes namespace ns with labels.
func (s *Namespaces) Create(ctx context.Context, ns string, lbls map[string]string) error {
	if err := identifiers.Validate(ns); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	if err := labels.ValidateAll(lbls); err != nil {
		return fmt.Errorf("namespace %q: %w", ns, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if namespaceBucket(tx, ns) != nil {
			return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrAlreadyExists)
		}
		b, err := CreateBucket(tx, ns, string(bucketLabels))
		if err != nil {
			return err
		}
		for k, v := range lbls {
			if err := b.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Labels returns the labels of namespace ns.
func (s *Namespaces) Labels(ctx context.Context, ns string) (map[string]string, error) {
	out := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if namespaceBucket(tx, ns) == nil {
			return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrNotFound)
		}
		if b := Bucket(tx, ns, string(bucketLabels)); b != nil {
			return b.ForEach(func(k, v []byte) error {
				out[string(k)] = string(v)
				return nil
			})
		}
		return nil
	})
	return out, err
}

// SetLabel sets one label of ns; an empty value removes it.
func (s *Namespaces) SetLabel(ctx context.Context, ns, key, value string) error {
	if err := labels.Validate(key, value); err != nil {
		return fmt.Errorf("namespace %q: %w", ns, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if namespaceBucket(tx, ns) == nil {
			return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrNotFound)
		}
		b, err := CreateBucket(tx, ns, string(bucketLabels))
		if err != nil {
			return err
		}
		if value == "" {
			return b.Delete([]byte(key))
		}
		return b.Put([]byte(key), []byte(value))
	})
}

// List returns every namespace name, sorted.
func (s *Namespaces) List(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		v1 := tx.Bucket(bucketV1)
		if v1 == nil {
			return nil
		}
		return v1.ForEach(func(k, v []byte) error {
			if v == nil { // sub-bucket
				out = append(out, string(k))
			}
			return nil
		})
	})
	sort.Strings(out)
	return out, err
}

// Delete removes ns. A namespace that still holds objects is not removed:
// the error says what is left, so the user knows what to clean up first.
func (s *Namespaces) Delete(ctx context.Context, ns string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := namespaceBucket(tx, ns)
		if b == nil {
			return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrNotFound)
		}
		if left := nonEmptyChildren(b); len(left) > 0 {
			return fmt.Errorf("namespace %q must be empty, but it still has %s: %w", ns, strings.Join(left, ", "), errdefs.ErrFailedPrecondition)
		}
		return tx.Bucket(bucketV1).DeleteBucket([]byte(ns))
	})
}

// nonEmptyChildren names the object buckets of a namespace that hold
// something. Snapshots are kept per snapshotter one level down.
func nonEmptyChildren(ns *bolt.Bucket) []string {
	var left []string
	ns.ForEach(func(k, v []byte) error {
		if v != nil || string(k) == string(bucketLabels) {
			return nil
		}
		child := ns.Bucket(k)
		if !bucketHasObjects(child, string(k) == "snapshots") {
			return nil
		}
		left = append(left, string(k))
		return nil
	})
	sort.Strings(left)
	return left
}

func bucketHasObjects(b *bolt.Bucket, nested bool) bool {
	found := false
	b.ForEach(func(k, v []byte) error {
		if nested && v == nil {
			if sub := b.Bucket(k); sub != nil && sub.Stats().KeyN > 0 {
				found = true
			}
			return nil
		}
		found = true
		return nil
	})
	return found
}

// Update changes the labels of ns as fieldpaths say: "labels" replaces them
// all, "labels.<key>" sets (or, when absent from lbls, removes) one. No
// fieldpaths means "labels". It returns the resulting labels.
func (s *Namespaces) Update(ctx context.Context, ns string, lbls map[string]string, fieldpaths ...string) (map[string]string, error) {
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	if err := labels.ValidateAll(lbls); err != nil {
		return nil, fmt.Errorf("namespace %q: %w", ns, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if namespaceBucket(tx, ns) == nil {
			return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrNotFound)
		}
		b, err := CreateBucket(tx, ns, string(bucketLabels))
		if err != nil {
			return err
		}
		for _, fp := range fieldpaths {
			switch {
			case fp == "labels":
				if err := clearBucket(b); err != nil {
					return err
				}
				for k, v := range lbls {
					if err := b.Put([]byte(k), []byte(v)); err != nil {
						return err
					}
				}
			case strings.HasPrefix(fp, "labels."):
				key := strings.TrimPrefix(fp, "labels.")
				if v, ok := lbls[key]; ok && v != "" {
					err = b.Put([]byte(key), []byte(v))
				} else {
					err = b.Delete([]byte(key))
				}
				if err != nil {
					return err
				}
			default:
				return fmt.Errorf("namespace field %q cannot be updated (only labels): %w", fp, errdefs.ErrInvalidArgument)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.Labels(ctx, ns)
}

func clearBucket(b *bolt.Bucket) error {
	var keys [][]byte
	b.ForEach(func(k, v []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	})
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
