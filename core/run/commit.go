package run

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/reference"
	"github.com/berthd/berth/core/run/names"
)

// LabelImageContent on a container record keeps its image's manifest (and
// through the manifest's labels its config and layers) from garbage
// collection while the container exists, so commit finds the layers
// below the writable one even after the image was removed.
const LabelImageContent = "containerd.io/gc.ref.content.berth.image"

// CommitOptions describe a commit.
type CommitOptions struct {
	// Reference names the new image ("busybox-foo", "repo:tag").
	Reference string
	Message   string
	Author    string
	// Changes are Dockerfile instructions applied to the config (see
	// ApplyChanges).
	Changes []string
	// Pause freezes a running container while its layer is read.
	Pause bool
}

// CommitResult names the new image.
type CommitResult struct {
	Name     string
	ImageID  digest.Digest // the config's digest
	Manifest ocispec.Descriptor
}

// Commit turns container ref's writable layer into a new image: its
// image's layers, the diff as one more layer, and its image's config with
// the new layer's diff ID, a history entry and the changes. The image is
// unpacked at once, so `run` of it needs no extraction.
func (m *Manager) Commit(ctx context.Context, ref string, o CommitOptions) (CommitResult, error) {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return CommitResult{}, err
	}
	name, err := reference.ParseNormalized(o.Reference)
	if err != nil {
		return CommitResult{}, fmt.Errorf("invalid reference %q for the new image: %v: %w", o.Reference, err, errdefs.ErrInvalidArgument)
	}
	base, err := m.baseImage(ctx, r)
	if err != nil {
		return CommitResult{}, err
	}
	cfg := base.config
	if err := ApplyChanges(&cfg.Config, o.Changes); err != nil {
		return CommitResult{}, err
	}
	if m.o.Leases == nil {
		return CommitResult{}, fmt.Errorf("commit needs the lease manager: %w", errdefs.ErrUnavailable)
	}
	lease, err := m.o.Leases.Create(ctx, leases.WithTemporary(), leases.WithExpiration(time.Hour))
	if err != nil {
		return CommitResult{}, err
	}
	defer func() {
		if err := m.o.Leases.Delete(context.WithoutCancel(ctx), lease); err != nil {
			slog.Warn("delete commit lease", "lease", lease.ID, "error", err)
		}
	}()
	ctx = leases.WithLease(ctx, lease.ID)
	layer, diffID, err := m.commitLayer(ctx, ns, r, base.docker, o.Pause)
	if err != nil {
		return CommitResult{}, err
	}
	now := time.Now().UTC()
	cfg.Created = &now
	if o.Author != "" {
		cfg.Author = o.Author
	}
	cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
	cfg.History = append(cfg.History, ocispec.History{
		Created: &now, CreatedBy: strings.Join(r.Config.Args, " "), Author: o.Author, Comment: o.Message,
	})
	manifest, err := m.writeImage(ctx, base, cfg, layer)
	if err != nil {
		return CommitResult{}, err
	}
	img, err := m.recordImage(ctx, name.String(), manifest)
	if err != nil {
		return CommitResult{}, err
	}
	if _, _, err := m.o.Unpacker.Unpack(ctx, img, r.Snapshotter, platforms.Default()); err != nil {
		slog.Warn("unpack committed image", "image", img.Name, "error", err)
	}
	configDesc, _ := images.Config(ctx, m.o.Content, manifest, platforms.All)
	return CommitResult{Name: img.Name, ImageID: configDesc.Digest, Manifest: manifest}, nil
}

// baseImage is the image a container was made from, as commit builds on
// it.
type baseImage struct {
	manifest ocispec.Manifest
	config   ocispec.Image
	docker   bool // Docker media types rather than OCI's
	mtype    string
}

func (m *Manager) baseImage(ctx context.Context, r Record) (baseImage, error) {
	dgst, err := digest.Parse(r.Config.Manifest)
	if err != nil {
		return baseImage{}, fmt.Errorf("container %s does not record its image's manifest: %w", names.Short(r.ID), errdefs.ErrFailedPrecondition)
	}
	info, err := m.o.Content.Info(ctx, dgst)
	if err != nil {
		return baseImage{}, fmt.Errorf("the image container %s was made from is gone: %w", names.Short(r.ID), err)
	}
	desc := ocispec.Descriptor{MediaType: r.Config.ManifestMediaType, Digest: dgst, Size: info.Size}
	if desc.MediaType == "" {
		desc.MediaType = ocispec.MediaTypeImageManifest
	}
	mf, err := images.ReadManifest(ctx, m.o.Content, desc)
	if err != nil {
		return baseImage{}, fmt.Errorf("container %s: image manifest: %w", names.Short(r.ID), err)
	}
	cfg, err := images.ReadConfig(ctx, m.o.Content, mf.Config)
	if err != nil {
		return baseImage{}, fmt.Errorf("container %s: image config: %w", names.Short(r.ID), err)
	}
	return baseImage{manifest: mf, config: cfg, docker: images.IsDockerType(desc.MediaType), mtype: desc.MediaType}, nil
}

// commitLayer writes the writable layer's diff into the content store and
// returns its descriptor and diff ID. A running container is paused
// meanwhile (when pause), so the layer is read in one consistent state.
func (m *Manager) commitLayer(ctx context.Context, ns string, r Record, docker, pause bool) (ocispec.Descriptor, digest.Digest, error) {
	mt := compression.MediaTypeOCILayerGzip
	if docker {
		mt = compression.MediaTypeDockerLayerGzip
	}
	if pause {
		resume, err := m.pauseForCommit(ctx, ns, r.ID)
		if err != nil {
			return ocispec.Descriptor{}, "", err
		}
		defer resume()
	}
	var desc ocispec.Descriptor
	err := m.withLower(ctx, r, func(lower, upper []mount.Mount, _ string) error {
		var err error
		desc, err = m.o.Comparer.Compare(ctx, lower, upper, diff.WithMediaType(mt),
			diff.WithReference("commit-"+r.ID[:names.ShortLen]+"-"+randomHex(4)))
		return err
	})
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("diff the writable layer of container %s: %w", names.Short(r.ID), err)
	}
	info, err := m.o.Content.Info(ctx, desc.Digest)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	diffID, err := digest.Parse(info.Labels[diff.LabelUncompressed])
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("new layer %s has no uncompressed digest: %w", desc.Digest, errdefs.ErrFailedPrecondition)
	}
	return desc, diffID, nil
}

// pauseForCommit freezes container id if it runs and returns the undo.
func (m *Manager) pauseForCommit(ctx context.Context, ns, id string) (func(), error) {
	e := m.entry(ns, id)
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := m.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.run == nil || r.State.Status != StatusRunning {
		return func() {}, nil
	}
	task := e.run.task
	if err := task.Pause(ctx); err != nil {
		return nil, fmt.Errorf("pause container %s for commit: %w", names.Short(id), err)
	}
	return func() {
		if err := task.Resume(context.WithoutCancel(ctx)); err != nil {
			slog.Warn("resume container after commit", "id", id, "error", err)
		}
	}, nil
}

// writeImage writes the new config and manifest, the manifest labelled so
// that garbage collection keeps its config and layers.
func (m *Manager) writeImage(ctx context.Context, base baseImage, cfg ocispec.Image, layer ocispec.Descriptor) (ocispec.Descriptor, error) {
	cfgBytes, err := json.Marshal(cfg)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	cfgDesc := ocispec.Descriptor{MediaType: base.manifest.Config.MediaType, Digest: digest.FromBytes(cfgBytes), Size: int64(len(cfgBytes))}
	if err := content.WriteBlob(ctx, m.o.Content, "commit-config-"+cfgDesc.Digest.Encoded(), bytes.NewReader(cfgBytes), cfgDesc); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("write image config: %w", err)
	}
	mf := base.manifest
	mf.Config = cfgDesc
	mf.Layers = append(append([]ocispec.Descriptor(nil), mf.Layers...), layer)
	mfBytes, err := json.Marshal(mf)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	mfDesc := ocispec.Descriptor{MediaType: base.mtype, Digest: digest.FromBytes(mfBytes), Size: int64(len(mfBytes))}
	children := append([]ocispec.Descriptor{cfgDesc}, mf.Layers...)
	if err := content.WriteBlob(ctx, m.o.Content, "commit-manifest-"+mfDesc.Digest.Encoded(), bytes.NewReader(mfBytes), mfDesc,
		content.WithLabels(images.ChildGCLabels(mfDesc, children))); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("write image manifest: %w", err)
	}
	return mfDesc, nil
}

// recordImage names the manifest, replacing what the name pointed to.
func (m *Manager) recordImage(ctx context.Context, name string, target ocispec.Descriptor) (images.Image, error) {
	img := images.Image{Name: name, Target: target}
	created, err := m.o.Images.Create(ctx, img)
	if errdefs.IsAlreadyExists(err) {
		created, err = m.o.Images.Update(ctx, img, "target")
	}
	if err != nil {
		return images.Image{}, fmt.Errorf("record image %s: %w", name, err)
	}
	return created, nil
}
