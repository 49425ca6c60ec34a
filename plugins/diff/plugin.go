// Package diff registers the differ (io.containerd.differ.v1 "walking", the
// id containerd gives its own, which `ctr plugins ls` shows), the diff gRPC
// service (io.containerd.grpc.v1 "diff", which ctr 1.6 and the containerd
// 2 client call to unpack client-side and to commit) and berthd's own
// image unpacker (io.berth.internal.v1 "unpack", used by the berth images
// service to unpack on import and for `berth images unpack`).
package diff

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/core/unpack"
	"github.com/berthd/berth/plugins"
	"github.com/berthd/berth/plugins/defaults"
	"github.com/berthd/berth/services/berthimages"
	diffservice "github.com/berthd/berth/services/diff"
)

// Plugin ids.
const (
	// DifferID is containerd's id for its tree-walking differ.
	DifferID = "walking"
	// UnpackID names the unpacker: GetByID(BerthInternalPlugin, UnpackID).
	UnpackID = "unpack"
)

// LabelDefaultSnapshotter on a namespace chooses its default
// snapshotter, as containerd clients honour it.
const LabelDefaultSnapshotter = "containerd.io/defaults/snapshotter"

// ServiceConfig is [plugins."io.containerd.grpc.v1.diff"].
type ServiceConfig struct {
	Order []string `toml:"default" comment:"Differs to try, in order; the first that supports a request answers it."`
}

func init() {
	plugins.Register(&plugins.Registration{
		Type:     plugins.DiffPlugin,
		ID:       DifferID,
		Requires: []plugins.Type{plugins.MetadataPlugin},
		InitFn: func(ic *plugins.InitContext) (any, error) {
			db, err := metadataDB(ic)
			if err != nil {
				return nil, err
			}
			ic.Meta.Platforms = []ocispec.Platform{platforms.DefaultSpec()}
			return diff.New(db.ContentStore()), nil
		},
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.GRPCPlugin,
		ID:       "diff",
		Requires: []plugins.Type{plugins.DiffPlugin},
		Config:   &ServiceConfig{Order: []string{DifferID}},
		InitFn:   initService,
	})
	plugins.Register(&plugins.Registration{
		Type:     plugins.BerthInternalPlugin,
		ID:       UnpackID,
		Requires: []plugins.Type{plugins.MetadataPlugin, plugins.DiffPlugin, plugins.SnapshotPlugin},
		InitFn:   initUnpacker,
	})
}

func metadataDB(ic *plugins.InitContext) (*metadata.DB, error) {
	v, err := ic.GetSingle(plugins.MetadataPlugin)
	if err != nil {
		return nil, err
	}
	db := v.(*metadata.DB)
	if db.ContentStore() == nil {
		return nil, fmt.Errorf("metadata has no content store: %w", errdefs.ErrFailedPrecondition)
	}
	return db, nil
}

func initService(ic *plugins.InitContext) (any, error) {
	cfg := ic.Config.(*ServiceConfig)
	var differs []diffservice.Differ
	for _, id := range cfg.Order {
		inst, err := ic.GetByID(plugins.DiffPlugin, id)
		if err != nil {
			return nil, fmt.Errorf("differ %q named in default: %w", id, err)
		}
		d, ok := inst.(diffservice.Differ)
		if !ok {
			return nil, fmt.Errorf("differ %q cannot both apply and compare: %w", id, errdefs.ErrInvalidArgument)
		}
		differs = append(differs, d)
	}
	return diffservice.New(differs...), nil
}

func initUnpacker(ic *plugins.InitContext) (any, error) {
	db, err := metadataDB(ic)
	if err != nil {
		return nil, err
	}
	inst, err := ic.GetByID(plugins.DiffPlugin, DifferID)
	if err != nil {
		return nil, err
	}
	applier, ok := inst.(diff.Applier)
	if !ok {
		return nil, fmt.Errorf("differ %q cannot apply layers: %w", DifferID, errdefs.ErrInvalidArgument)
	}
	u := &ImageUnpacker{
		unpacker: unpack.New(db.ContentStore(), applier, unpack.WithLeases(db.Leases())),
		db:       db,
		fallback: "overlayfs",
	}
	// The defaults plugin is initialised after the snapshotters; look it
	// up per call so the order among internal plugins does not matter.
	u.defaults = func() string {
		if p := ic.Plugins().Get(plugins.BerthInternalPlugin, defaults.ID); p != nil {
			if d, err := p.Instance(); err == nil {
				return d.(*defaults.Defaults).Snapshotter
			}
		}
		return u.fallback
	}
	return u, nil
}

// ImageUnpacker unpacks image records into the namespaced snapshotters of
// the metadata store; it implements services/berthimages.Unpacker.
type ImageUnpacker struct {
	unpacker *unpack.Unpacker
	db       *metadata.DB
	defaults func() string
	fallback string
}

var _ berthimages.Unpacker = (*ImageUnpacker)(nil)

// Unpacker is the core unpacker, for pulls (Unpacker().Hook).
func (u *ImageUnpacker) Unpacker() *unpack.Unpacker { return u.unpacker }

// Snapshotter resolves a snapshotter name as Unpack does ("" is the
// namespace's or berthd's default) to the name and namespaced snapshotter.
func (u *ImageUnpacker) Snapshotter(ctx context.Context, name string) (string, snapshots.Snapshotter, error) {
	name, err := u.snapshotterName(ctx, name)
	if err != nil {
		return "", nil, err
	}
	sn := u.db.Snapshotter(name)
	if sn == nil {
		return name, nil, fmt.Errorf("snapshotter %q is not loaded: %w", name, errdefs.ErrNotFound)
	}
	return name, sn, nil
}

// Unpack unpacks img for platform into the snapshotter named (""
// means the namespace's containerd.io/defaults/snapshotter label, else
// berthd's default) and returns the top chain ID and the snapshotter used.
func (u *ImageUnpacker) Unpack(ctx context.Context, img images.Image, snapshotter string, platform platforms.MatchComparer) (string, string, error) {
	name, sn, err := u.Snapshotter(ctx, snapshotter)
	if err != nil {
		return "", name, err
	}
	res, err := u.unpacker.Unpack(ctx, img.Target, name, sn, unpack.WithPlatform(platform))
	if err != nil {
		return "", name, fmt.Errorf("unpack %s into %s: %w", img.Name, name, err)
	}
	return res.ChainID.String(), name, nil
}

func (u *ImageUnpacker) snapshotterName(ctx context.Context, name string) (string, error) {
	if name != "" {
		return name, nil
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	lbls, err := u.db.Namespaces().Labels(ctx, ns)
	if err == nil && lbls[LabelDefaultSnapshotter] != "" {
		return lbls[LabelDefaultSnapshotter], nil
	}
	return u.defaults(), nil
}
