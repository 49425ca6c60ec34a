package images

import (
	"context"
	"fmt"
	"strconv"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
)

// Garbage collection follows labels whose key starts with
// LabelGCRefContent from a blob to the blob named by the value. These are
// the keys containerd's clients set, so content written by either keeps
// the same children alive.
const (
	LabelGCRefContent = "containerd.io/gc.ref.content"
	// LabelGCRefManifest prefixes an index's references to its children,
	// numbered from 0.
	LabelGCRefManifest = LabelGCRefContent + ".m."
	// LabelGCRefConfig is a manifest's reference to its config.
	LabelGCRefConfig = LabelGCRefContent + ".config"
	// LabelGCRefLayer prefixes a manifest's references to its layers,
	// numbered from 0.
	LabelGCRefLayer = LabelGCRefContent + ".l."
)

// ChildGCLabels returns the labels parent needs so that garbage
// collection keeps children: an index refers to each child with
// "…m.<i>"; a manifest to its config with "…config" and to each layer with
// "…l.<i>"; anything else with "…<i>". Numbers count per key, in the order
// of children, so a parent labelled with only some of its children (one
// platform of an index) gets m.0 for the first one kept.
func ChildGCLabels(parent ocispec.Descriptor, children []ocispec.Descriptor) map[string]string {
	if len(children) == 0 {
		return nil
	}
	labels := make(map[string]string, len(children))
	counts := map[string]int{}
	for _, child := range children {
		key := childKey(parent, child)
		n := counts[key]
		counts[key] = n + 1
		switch {
		case key[len(key)-1] == '.':
			key += strconv.Itoa(n)
		case n > 0:
			key += "." + strconv.Itoa(n)
		}
		labels[key] = child.Digest.String()
	}
	return labels
}

func childKey(parent, child ocispec.Descriptor) string {
	switch {
	case IsIndexType(parent.MediaType):
		return LabelGCRefManifest
	case IsConfigType(child.MediaType):
		return LabelGCRefConfig
	case IsLayerType(child.MediaType):
		return LabelGCRefLayer
	}
	return LabelGCRefContent + "."
}

// SetChildGCLabels sets ChildGCLabels(parent, children) on parent's blob,
// leaving its other labels alone.
func SetChildGCLabels(ctx context.Context, manager content.Manager, parent ocispec.Descriptor, children []ocispec.Descriptor) error {
	labels := ChildGCLabels(parent, children)
	if len(labels) == 0 {
		return nil
	}
	fields := make([]string, 0, len(labels))
	for k := range labels {
		fields = append(fields, "labels."+k)
	}
	if _, err := manager.Update(ctx, content.Info{Digest: parent.Digest, Labels: labels}, fields...); err != nil {
		return fmt.Errorf("set gc labels on %s: %w", parent.Digest, err)
	}
	return nil
}

// SetChildrenLabels wraps h so that every descriptor for which h returns
// children gets the GC labels referring to those children.
func SetChildrenLabels(manager content.Manager, h Handler) HandlerFunc {
	return func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		children, err := h.Handle(ctx, desc)
		if err != nil {
			return children, err
		}
		if err := SetChildGCLabels(ctx, manager, desc, children); err != nil {
			return nil, err
		}
		return children, nil
	}
}
