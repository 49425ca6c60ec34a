package metadata

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/containers"
	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/labels"
	"github.com/berthd/berth/core/namespaces"
)

// Container record fields.
const (
	tagCtrImage byte = 1 + iota
	tagCtrRuntime
	tagCtrRuntimeOptions
	tagCtrSpec
	tagCtrSnapshotter
	tagCtrSnapshotKey
	tagCtrCreated
	tagCtrUpdated
	tagCtrLabels
	tagCtrExtensions
	tagCtrSandbox
)

// containerStore implements containers.Store over the database.
type containerStore struct{ db *DB }

var _ containers.Store = (*containerStore)(nil)

// Containers returns the container store.
func (m *DB) Containers() containers.Store { return &containerStore{db: m} }

func encodeContainer(c containers.Container) []byte {
	e := newEncoder()
	e.string(tagCtrImage, c.Image)
	e.string(tagCtrRuntime, c.Runtime.Name)
	e.any(tagCtrRuntimeOptions, c.Runtime.Options)
	e.any(tagCtrSpec, c.Spec)
	e.string(tagCtrSnapshotter, c.Snapshotter)
	e.string(tagCtrSnapshotKey, c.SnapshotKey)
	e.time(tagCtrCreated, c.CreatedAt)
	e.time(tagCtrUpdated, c.UpdatedAt)
	e.strings(tagCtrLabels, c.Labels)
	e.anys(tagCtrExtensions, c.Extensions)
	e.string(tagCtrSandbox, c.SandboxID)
	return e.buf
}

func decodeContainer(id string, v []byte) (containers.Container, error) {
	c := containers.Container{ID: id}
	err := decodeFields(v, func(tag byte, v []byte) (err error) {
		switch tag {
		case tagCtrImage:
			c.Image = string(v)
		case tagCtrRuntime:
			c.Runtime.Name = string(v)
		case tagCtrRuntimeOptions:
			c.Runtime.Options, err = decodeAny(v)
		case tagCtrSpec:
			c.Spec, err = decodeAny(v)
		case tagCtrSnapshotter:
			c.Snapshotter = string(v)
		case tagCtrSnapshotKey:
			c.SnapshotKey = string(v)
		case tagCtrCreated:
			c.CreatedAt, err = decodeTime(v)
		case tagCtrUpdated:
			c.UpdatedAt, err = decodeTime(v)
		case tagCtrLabels:
			c.Labels, err = decodeStrings(v)
		case tagCtrExtensions:
			c.Extensions, err = decodeAnys(v)
		case tagCtrSandbox:
			c.SandboxID = string(v)
		}
		return err
	})
	if err != nil {
		return c, fmt.Errorf("container %q: %w", id, err)
	}
	return c, nil
}

func getContainer(tx *bolt.Tx, ns, id string) (containers.Container, error) {
	if b := recordBucket(tx, ns, bucketContainers); b != nil {
		if v := b.Get([]byte(id)); v != nil {
			return decodeContainer(id, v)
		}
	}
	return containers.Container{}, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
}

func validateContainer(c containers.Container) error {
	if err := identifiers.Validate(c.ID); err != nil {
		return fmt.Errorf("container id: %w", err)
	}
	if err := labels.ValidateAll(c.Labels); err != nil {
		return fmt.Errorf("container %q: %w", c.ID, err)
	}
	for k := range c.Extensions {
		if k == "" {
			return fmt.Errorf("container %q: extension keys must not be empty: %w", c.ID, errdefs.ErrInvalidArgument)
		}
	}
	switch {
	case c.Runtime.Name == "":
		return fmt.Errorf("container %q: runtime name must be set: %w", c.ID, errdefs.ErrInvalidArgument)
	case isNilAny(c.Spec):
		return fmt.Errorf("container %q: spec must be set: %w", c.ID, errdefs.ErrInvalidArgument)
	case c.SnapshotKey != "" && c.Snapshotter == "":
		return fmt.Errorf("container %q: a snapshot key needs a snapshotter: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Get returns the container id.
func (s *containerStore) Get(ctx context.Context, id string) (containers.Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	var c containers.Container
	err = s.db.View(func(tx *bolt.Tx) error {
		c, err = getContainer(tx, ns, id)
		return err
	})
	return c, err
}

// List returns the containers matching any of filters: id, image,
// runtime.name, snapshotter, snapshotkey, sandbox, labels.<key>.
func (s *containerStore) List(ctx context.Context, fs ...string) ([]containers.Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, fmt.Errorf("container filters: %w", err)
	}
	var out []containers.Container
	err = s.db.View(func(tx *bolt.Tx) error {
		b := recordBucket(tx, ns, bucketContainers)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			c, err := decodeContainer(string(k), v)
			if err != nil {
				return err
			}
			if filter.Match(adaptContainer(c)) {
				out = append(out, c)
			}
			return nil
		})
	})
	return out, err
}

func adaptContainer(c containers.Container) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		if fp[0] == "labels" {
			v, ok := c.Labels[strings.Join(fp[1:], ".")]
			return v, ok && len(fp) > 1
		}
		switch strings.Join(fp, ".") {
		case "id":
			return c.ID, true
		case "image":
			return c.Image, true
		case "runtime.name":
			return c.Runtime.Name, true
		case "snapshotter":
			return c.Snapshotter, true
		case "snapshotkey":
			return c.SnapshotKey, true
		case "sandbox":
			return c.SandboxID, true
		}
		return "", false
	})
}

// Create records a new container.
func (s *containerStore) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	if err := validateContainer(c); err != nil {
		return containers.Container{}, err
	}
	c.Labels = cloneLabels(c.Labels)
	c.CreatedAt = now()
	c.UpdatedAt = c.CreatedAt
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := createRecordBucket(tx, ns, bucketContainers)
		if err != nil {
			return err
		}
		if b.Get([]byte(c.ID)) != nil {
			return fmt.Errorf("container %q: %w", c.ID, errdefs.ErrAlreadyExists)
		}
		return b.Put([]byte(c.ID), encodeContainer(c))
	})
	if err != nil {
		return containers.Container{}, err
	}
	return c, nil
}

// defaultContainerPaths are what an Update without field paths changes.
var defaultContainerPaths = []string{"labels", "spec", "image", "snapshotkey", "extensions"}

// Update changes the fields of a container named in fieldpaths; see
// containers.Store. Without field paths a runtime or snapshotter other
// than the recorded one is refused, as naming them is.
func (s *containerStore) Update(ctx context.Context, c containers.Container, fieldpaths ...string) (containers.Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	if c.ID == "" {
		return containers.Container{}, fmt.Errorf("container id must be set: %w", errdefs.ErrInvalidArgument)
	}
	var updated containers.Container
	var dirty bool
	err = s.db.Update(func(tx *bolt.Tx) error {
		cur, err := getContainer(tx, ns, c.ID)
		if err != nil {
			return err
		}
		if updated, err = applyContainerPaths(cur, c, fieldpaths); err != nil {
			return err
		}
		if err := validateContainer(updated); err != nil {
			return err
		}
		updated.UpdatedAt = now()
		dirty = cur.SnapshotKey != updated.SnapshotKey || gcLabelsChanged(cur.Labels, updated.Labels)
		return recordBucket(tx, ns, bucketContainers).Put([]byte(c.ID), encodeContainer(updated))
	})
	if err != nil {
		return containers.Container{}, err
	}
	if dirty {
		s.db.markDirty(nil)
	}
	return updated, nil
}

func applyContainerPaths(cur, in containers.Container, fieldpaths []string) (containers.Container, error) {
	if len(fieldpaths) == 0 {
		if in.Runtime.Name != cur.Runtime.Name {
			return cur, fmt.Errorf("container %q: runtime is immutable: %w", cur.ID, errdefs.ErrInvalidArgument)
		}
		if in.Snapshotter != cur.Snapshotter {
			return cur, fmt.Errorf("container %q: snapshotter is immutable: %w", cur.ID, errdefs.ErrInvalidArgument)
		}
		fieldpaths = defaultContainerPaths
	}
	out := cur
	out.Labels = cloneLabels(cur.Labels)
	out.Extensions = cloneAnys(cur.Extensions)
	for _, fp := range fieldpaths {
		var ok bool
		if out.Labels, ok = applyLabelPath(out.Labels, in.Labels, fp); ok {
			continue
		}
		if err := applyContainerPath(&out, in, fp); err != nil {
			return cur, err
		}
	}
	out.Labels = cloneLabels(out.Labels)
	if len(out.Extensions) == 0 {
		out.Extensions = nil
	}
	return out, nil
}

func applyContainerPath(out *containers.Container, in containers.Container, fp string) error {
	switch {
	case fp == "spec":
		out.Spec = in.Spec
	case fp == "image":
		out.Image = in.Image
	case fp == "snapshotkey":
		out.SnapshotKey = in.SnapshotKey
	case fp == "extensions":
		out.Extensions = cloneAnys(in.Extensions)
	case strings.HasPrefix(fp, "extensions."):
		key := strings.TrimPrefix(fp, "extensions.")
		if out.Extensions == nil {
			out.Extensions = map[string]typeurl.Any{}
		}
		if a, ok := in.Extensions[key]; ok && !isNilAny(a) {
			out.Extensions[key] = a
		} else {
			delete(out.Extensions, key)
		}
	case fp == "runtime" || strings.HasPrefix(fp, "runtime.") || fp == "snapshotter":
		return fmt.Errorf("container %q: field %q is immutable: %w", out.ID, fp, errdefs.ErrInvalidArgument)
	default:
		return fmt.Errorf("container %q: field %q cannot be updated: %w", out.ID, fp, errdefs.ErrInvalidArgument)
	}
	return nil
}

func cloneAnys(m map[string]typeurl.Any) map[string]typeurl.Any {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]typeurl.Any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Delete removes the container record; its snapshot is collected unless
// something else references it.
func (s *containerStore) Delete(ctx context.Context, id string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := recordBucket(tx, ns, bucketContainers)
		if b == nil || b.Get([]byte(id)) == nil {
			return fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return err
	}
	s.db.markDirty(nil)
	return nil
}
