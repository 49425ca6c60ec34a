package metadata

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/labels"
	"github.com/berthd/berth/core/namespaces"
)

// maxImageName bounds image names; references are far shorter.
const maxImageName = 4096

// Image record fields.
const (
	tagImageTarget byte = 1 + iota
	tagImageCreated
	tagImageUpdated
	tagImageLabels
	// tagImageTargetDigest repeats the target's digest outside its JSON,
	// so the collector reads it without decoding the descriptor.
	tagImageTargetDigest
)

// imageStore implements images.Store over the database.
type imageStore struct{ db *DB }

var _ images.Store = (*imageStore)(nil)

// Images returns the image store.
func (m *DB) Images() images.Store { return &imageStore{db: m} }

func encodeImage(img images.Image) ([]byte, error) {
	target, err := json.Marshal(img.Target)
	if err != nil {
		return nil, fmt.Errorf("image %q: encode target: %w", img.Name, err)
	}
	e := newEncoder()
	e.bytes(tagImageTarget, target)
	e.string(tagImageTargetDigest, img.Target.Digest.String())
	e.time(tagImageCreated, img.CreatedAt)
	e.time(tagImageUpdated, img.UpdatedAt)
	e.strings(tagImageLabels, img.Labels)
	return e.buf, nil
}

func decodeImage(name string, v []byte) (images.Image, error) {
	img := images.Image{Name: name}
	err := decodeFields(v, func(tag byte, v []byte) (err error) {
		switch tag {
		case tagImageTarget:
			err = json.Unmarshal(v, &img.Target)
		case tagImageCreated:
			img.CreatedAt, err = decodeTime(v)
		case tagImageUpdated:
			img.UpdatedAt, err = decodeTime(v)
		case tagImageLabels:
			img.Labels, err = decodeStrings(v)
		}
		return err
	})
	if err != nil {
		return img, fmt.Errorf("image %q: %w", name, err)
	}
	return img, nil
}

func getImage(tx *bolt.Tx, ns, name string) (images.Image, error) {
	if b := recordBucket(tx, ns, bucketImages); b != nil {
		if v := b.Get([]byte(name)); v != nil {
			return decodeImage(name, v)
		}
	}
	return images.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
}

func putImage(tx *bolt.Tx, ns string, img images.Image) error {
	v, err := encodeImage(img)
	if err != nil {
		return err
	}
	b, err := createRecordBucket(tx, ns, bucketImages)
	if err != nil {
		return err
	}
	return b.Put([]byte(img.Name), v)
}

// validateImageName accepts what can be a reference: printable ASCII
// without spaces, of bounded length.
func validateImageName(name string) error {
	if name == "" {
		return fmt.Errorf("image name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(name) > maxImageName {
		return fmt.Errorf("image name is %d bytes, more than the limit of %d: %w", len(name), maxImageName, errdefs.ErrInvalidArgument)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("image name %q: byte %d (%q) is not allowed in a reference: %w", name, i, c, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func validateTarget(name string, t ocispec.Descriptor) error {
	if err := t.Digest.Validate(); err != nil {
		return fmt.Errorf("image %q: target digest %q: %v: %w", name, t.Digest, err, errdefs.ErrInvalidArgument)
	}
	if t.Size <= 0 {
		return fmt.Errorf("image %q: target size %d must be positive: %w", name, t.Size, errdefs.ErrInvalidArgument)
	}
	if t.MediaType == "" {
		return fmt.Errorf("image %q: target media type must be set: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

func validateImage(img images.Image) error {
	if err := validateImageName(img.Name); err != nil {
		return err
	}
	if err := labels.ValidateAll(img.Labels); err != nil {
		return fmt.Errorf("image %q: %w", img.Name, err)
	}
	return validateTarget(img.Name, img.Target)
}

// Get returns the image name.
func (s *imageStore) Get(ctx context.Context, name string) (images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	var img images.Image
	err = s.db.View(func(tx *bolt.Tx) error {
		img, err = getImage(tx, ns, name)
		return err
	})
	return img, err
}

// List returns the images matching any of filters: name, target.digest,
// target.mediatype, target.size, labels.<key>.
func (s *imageStore) List(ctx context.Context, fs ...string) ([]images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, fmt.Errorf("image filters: %w", err)
	}
	var out []images.Image
	err = s.db.View(func(tx *bolt.Tx) error {
		b := recordBucket(tx, ns, bucketImages)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			img, err := decodeImage(string(k), v)
			if err != nil {
				return err
			}
			if filter.Match(adaptImage(img)) {
				out = append(out, img)
			}
			return nil
		})
	})
	return out, err
}

func adaptImage(img images.Image) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "name":
			return img.Name, len(fp) == 1
		case "target":
			return adaptTarget(img.Target, fp[1:])
		case "labels":
			v, ok := img.Labels[strings.Join(fp[1:], ".")]
			return v, ok && len(fp) > 1
		}
		return "", false
	})
}

func adaptTarget(t ocispec.Descriptor, fp []string) (string, bool) {
	if len(fp) != 1 {
		return "", false
	}
	switch fp[0] {
	case "digest":
		return t.Digest.String(), true
	case "mediatype":
		return t.MediaType, true
	case "size":
		return fmt.Sprint(t.Size), true
	}
	return "", false
}

// Create records a new image.
func (s *imageStore) Create(ctx context.Context, img images.Image) (images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	if err := validateImage(img); err != nil {
		return images.Image{}, err
	}
	img.Labels = cloneLabels(img.Labels)
	img.CreatedAt = now()
	img.UpdatedAt = img.CreatedAt
	err = s.db.Update(func(tx *bolt.Tx) error {
		if _, err := getImage(tx, ns, img.Name); err == nil {
			return fmt.Errorf("image %q: %w", img.Name, errdefs.ErrAlreadyExists)
		}
		return putImage(tx, ns, img)
	})
	if err != nil {
		return images.Image{}, err
	}
	return img, nil
}

// Update changes the fields of an image named in fieldpaths: "labels",
// "labels.<key>", "target", "annotations" and "annotations.<key>" (the
// target's annotations). None means labels and target.
func (s *imageStore) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	if err := validateImageName(img.Name); err != nil {
		return images.Image{}, err
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels", "target"}
	}
	var updated images.Image
	var dirty bool
	err = s.db.Update(func(tx *bolt.Tx) error {
		cur, err := getImage(tx, ns, img.Name)
		if err != nil {
			return err
		}
		if updated, err = applyImagePaths(cur, img, fieldpaths); err != nil {
			return err
		}
		if err := validateImage(updated); err != nil {
			return err
		}
		updated.UpdatedAt = now()
		dirty = cur.Target.Digest != updated.Target.Digest || gcLabelsChanged(cur.Labels, updated.Labels)
		return putImage(tx, ns, updated)
	})
	if err != nil {
		return images.Image{}, err
	}
	if dirty {
		s.db.markDirty(nil)
	}
	return updated, nil
}

func applyImagePaths(cur, in images.Image, fieldpaths []string) (images.Image, error) {
	out := cur
	out.Labels = cloneLabels(cur.Labels)
	for _, fp := range fieldpaths {
		var ok bool
		if out.Labels, ok = applyLabelPath(out.Labels, in.Labels, fp); ok {
			continue
		}
		switch {
		case fp == "target":
			out.Target = in.Target
		case fp == "annotations":
			out.Target.Annotations = cloneLabels(in.Target.Annotations)
		case strings.HasPrefix(fp, "annotations."):
			key := strings.TrimPrefix(fp, "annotations.")
			out.Target.Annotations, _ = applyLabelPath(cloneLabels(out.Target.Annotations), in.Target.Annotations, "labels."+key)
		default:
			return out, fmt.Errorf("image %q: field %q cannot be updated: %w", cur.Name, fp, errdefs.ErrInvalidArgument)
		}
	}
	out.Labels = cloneLabels(out.Labels)
	out.Target.Annotations = cloneLabels(out.Target.Annotations)
	return out, nil
}

// Delete removes the image name. With images.DeleteTarget it fails with
// errdefs.ErrFailedPrecondition unless the image points there; with
// images.SynchronousDelete it returns after garbage collection removed
// what only the image held.
func (s *imageStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	var o images.DeleteOptions
	for _, opt := range opts {
		if err := opt(ctx, &o); err != nil {
			return fmt.Errorf("image delete option: %w", err)
		}
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		cur, err := getImage(tx, ns, name)
		if err != nil {
			return err
		}
		if o.Target != nil && o.Target.Digest != cur.Target.Digest {
			return fmt.Errorf("image %q points to %s, not %s: %w", name, cur.Target.Digest, o.Target.Digest, errdefs.ErrFailedPrecondition)
		}
		return recordBucket(tx, ns, bucketImages).Delete([]byte(name))
	})
	if err != nil {
		return err
	}
	s.db.markDirty(nil)
	if o.Synchronous {
		return s.db.waitCollect(ctx, "image "+name)
	}
	return nil
}
