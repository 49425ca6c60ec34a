// Package unpack turns an image's layers into committed snapshots: for the
// platform's manifest, each layer is applied on top of its parent's
// snapshot and committed under its chain ID, layers already present are
// reused, and the image's config blob is labelled
// containerd.io/gc.ref.snapshot.<snapshotter>=<top chain ID>, which both
// marks the image unpacked and keeps its snapshots from garbage
// collection while the image exists.
//
// Unpack does a whole image; Hook does the same layer by layer as a pull
// lands blobs, each layer applied as soon as its blob and its parent's
// snapshot are there.
package unpack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
)

// Labels the unpacker sets, containerd's names.
const (
	// LabelSnapshotRef on an extraction snapshot names the committed
	// snapshot it will become; the metadata snapshotter answers a Prepare
	// whose target already exists with errdefs.ErrAlreadyExists.
	LabelSnapshotRef = "containerd.io/snapshot.ref"
	// LabelSnapshotDiffID and LabelSnapshotParent describe the layer to
	// snapshotters (they are passed on to the backing snapshotter).
	LabelSnapshotDiffID = "containerd.io/snapshot/diff-id"
	LabelSnapshotParent = "containerd.io/snapshot/parent-chain-id"
	// LabelGCRefSnapshot + <snapshotter> on the config blob holds the top
	// chain ID of the image unpacked into that snapshotter.
	LabelGCRefSnapshot = "containerd.io/gc.ref.snapshot."
	// LabelGCRoot keeps an extraction snapshot made without a lease.
	LabelGCRoot = "containerd.io/gc.root"

	// KeyPrefix starts the keys of extraction snapshots:
	// "extract-<unique> <chain ID>", as containerd names them.
	KeyPrefix = "extract"

	// inheritedPrefix marks layer annotations passed on as snapshot labels.
	inheritedPrefix = "containerd.io/snapshot/"
)

// leaseExpiry bounds the lease an unpack takes when its context has none,
// so a crash mid-unpack does not pin snapshots for ever (berthd also drops
// its temporary leases when it starts).
const leaseExpiry = 24 * time.Hour

// Store is the part of a content store the unpacker uses: it reads
// manifests, configs and layers and labels configs and layers.
type Store interface {
	content.Provider
	Info(ctx context.Context, dgst digest.Digest) (content.Info, error)
	Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error)
}

// Unpacker unpacks images from one content store with one applier. It is
// safe for concurrent use; concurrent unpacks (of this or any Unpacker in
// the process) that need the same chain ID in the same snapshotter and
// namespace extract it once, the others waiting and reusing it.
type Unpacker struct {
	content Store
	applier diff.Applier
	leases  leases.Manager
	logger  *slog.Logger
}

// Opt configures an Unpacker.
type Opt func(*Unpacker)

// WithLeases lets Unpack hold its work under a temporary lease when its
// context carries none. Without it, extraction snapshots are labelled
// containerd.io/gc.root while they are worked on.
func WithLeases(m leases.Manager) Opt { return func(u *Unpacker) { u.leases = m } }

// WithLogger sets where progress is logged (debug level).
func WithLogger(l *slog.Logger) Opt { return func(u *Unpacker) { u.logger = l } }

// New returns an unpacker reading from store (in berthd, the namespaced
// content store, so the namespace of each call's context applies) and
// applying layers with applier.
func New(store Store, applier diff.Applier, opts ...Opt) *Unpacker {
	u := &Unpacker{content: store, applier: applier, logger: slog.Default()}
	for _, opt := range opts {
		opt(u)
	}
	return u
}

// UnpackOpt configures one unpack.
type UnpackOpt func(*unpackOptions)

type unpackOptions struct {
	platform   platforms.MatchComparer
	applyOpts  []diff.ApplyOpt
	snapLabels map[string]string
}

// WithPlatform chooses the manifest of a multi-platform image (default
// the host's, platforms.Default()).
func WithPlatform(p platforms.MatchComparer) UnpackOpt {
	return func(o *unpackOptions) { o.platform = p }
}

// WithApplyOpts passes options to every Apply (diff.WithSyncFs).
func WithApplyOpts(opts ...diff.ApplyOpt) UnpackOpt {
	return func(o *unpackOptions) { o.applyOpts = append(o.applyOpts, opts...) }
}

// WithSnapshotLabels adds labels to every snapshot the unpack creates.
func WithSnapshotLabels(labels map[string]string) UnpackOpt {
	return func(o *unpackOptions) {
		if o.snapLabels == nil {
			o.snapLabels = map[string]string{}
		}
		maps.Copy(o.snapLabels, labels)
	}
}

func unpackOpts(opts []UnpackOpt) unpackOptions {
	var o unpackOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.platform == nil {
		o.platform = platforms.Default()
	}
	return o
}

// Result describes a finished unpack.
type Result struct {
	// Manifest and Config are the platform manifest unpacked and its config.
	Manifest ocispec.Descriptor
	Config   ocispec.Descriptor
	// ChainID names the top committed snapshot: the image's root
	// filesystem ("" for an image without layers).
	ChainID digest.Digest
	// Layers is the number of layers; Applied how many of them this unpack
	// extracted (the others were present already or extracted by a
	// concurrent unpack).
	Layers  int
	Applied int
}

// job is one manifest's unpack into one snapshotter.
type job struct {
	name     string // snapshotter name
	sn       snapshots.Snapshotter
	opts     unpackOptions
	manifest ocispec.Descriptor
	config   ocispec.Descriptor
	layers   []ocispec.Descriptor
	diffIDs  []digest.Digest
	chain    []digest.Digest
	// gcRoot labels extraction snapshots when no lease protects them.
	gcRoot bool
}

// Unpack unpacks target (an index or manifest) for the platform into the
// snapshotter sn, known to GC labels and lease resources as snapshotter.
// Every layer whose chain ID is not yet a committed snapshot is prepared
// as "extract-<unique> <chain ID>" on its parent, applied (its diff ID
// verified), committed as the chain ID with containerd.io/snapshot.ref,
// and its blob labelled containerd.io/uncompressed; a failed layer's
// extraction snapshot is removed. Finally the config blob gets
// containerd.io/gc.ref.snapshot.<snapshotter>.
func (u *Unpacker) Unpack(ctx context.Context, target ocispec.Descriptor, snapshotter string, sn snapshots.Snapshotter, opts ...UnpackOpt) (Result, error) {
	start := time.Now()
	o := unpackOpts(opts)
	ctx, release, err := u.withLease(ctx)
	if err != nil {
		return Result{}, err
	}
	defer release()
	j, err := u.newJob(ctx, target, snapshotter, sn, o)
	if err != nil {
		return Result{}, err
	}
	res := j.result()
	for i := range j.layers {
		applied, err := u.unpackLayer(ctx, j, i)
		if err != nil {
			return res, err
		}
		if applied {
			res.Applied++
		}
	}
	if err := u.markUnpacked(ctx, j); err != nil {
		return res, err
	}
	u.logger.DebugContext(ctx, "image unpacked", "target", target.Digest, "snapshotter", snapshotter,
		"chain_id", res.ChainID, "layers", res.Layers, "applied", res.Applied, "duration", time.Since(start))
	return res, nil
}

// IsUnpacked reports whether target's platform manifest has its top
// snapshot committed in sn.
func IsUnpacked(ctx context.Context, store content.Provider, target ocispec.Descriptor, sn snapshots.Snapshotter, platform platforms.MatchComparer) (bool, error) {
	if platform == nil {
		platform = platforms.Default()
	}
	m, err := images.Manifest(ctx, store, target, platform)
	if err != nil {
		return false, err
	}
	diffIDs, err := images.RootFS(ctx, store, m.Config)
	if err != nil {
		return false, err
	}
	if len(diffIDs) == 0 {
		return true, nil
	}
	_, err = sn.Stat(ctx, images.ChainID(diffIDs).String())
	switch {
	case err == nil:
		return true, nil
	case errdefs.IsNotFound(err):
		return false, nil
	}
	return false, err
}

// withLease returns ctx under a lease: its own, or a temporary one made
// with the lease manager (deleted by release). Without either, the job
// labels its extraction snapshots gc.root instead.
func (u *Unpacker) withLease(ctx context.Context) (context.Context, func(), error) {
	if _, ok := leases.FromContext(ctx); ok || u.leases == nil {
		return ctx, func() {}, nil
	}
	l, err := u.leases.Create(ctx, leases.WithExpiration(leaseExpiry), leases.WithTemporary())
	if err != nil {
		return nil, nil, fmt.Errorf("unpack: create lease: %w", err)
	}
	release := func() {
		if err := u.leases.Delete(context.WithoutCancel(ctx), l); err != nil {
			u.logger.Warn("delete unpack lease", "lease", l.ID, "error", err)
		}
	}
	return leases.WithLease(ctx, l.ID), release, nil
}

// newJob resolves target's manifest for the platform and reads its layers
// and diff IDs.
func (u *Unpacker) newJob(ctx context.Context, target ocispec.Descriptor, snapshotter string, sn snapshots.Snapshotter, o unpackOptions) (*job, error) {
	if sn == nil || snapshotter == "" {
		return nil, fmt.Errorf("unpack %s: snapshotter %q is not available: %w", target.Digest, snapshotter, errdefs.ErrInvalidArgument)
	}
	r, err := images.ResolveManifest(ctx, u.content, target, o.platform)
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", target.Digest, err)
	}
	return u.jobFor(ctx, r.Descriptor, r.Manifest, snapshotter, sn, o)
}

// jobFor reads the config of manifest m and pairs its layers with the
// diff IDs.
func (u *Unpacker) jobFor(ctx context.Context, desc ocispec.Descriptor, m ocispec.Manifest, snapshotter string, sn snapshots.Snapshotter, o unpackOptions) (*job, error) {
	img, err := images.ReadConfig(ctx, u.content, m.Config)
	if err != nil {
		return nil, fmt.Errorf("unpack manifest %s: %w", desc.Digest, err)
	}
	if img.RootFS.Type != "" && img.RootFS.Type != "layers" {
		return nil, fmt.Errorf("unpack manifest %s: config rootfs type %q is not \"layers\": %w", desc.Digest, img.RootFS.Type, errdefs.ErrNotImplemented)
	}
	if len(img.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("unpack manifest %s: %d layers but the config lists %d diff IDs: %w",
			desc.Digest, len(m.Layers), len(img.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
	}
	_, leased := leases.FromContext(ctx)
	return &job{
		name: snapshotter, sn: sn, opts: o,
		manifest: desc, config: m.Config, layers: m.Layers,
		diffIDs: img.RootFS.DiffIDs, chain: images.ChainIDs(img.RootFS.DiffIDs),
		gcRoot: !leased,
	}, nil
}

func (j *job) result() Result {
	r := Result{Manifest: j.manifest, Config: j.config, Layers: len(j.layers)}
	if len(j.chain) > 0 {
		r.ChainID = j.chain[len(j.chain)-1]
	}
	return r
}

// labels are the labels of layer i's snapshots: layer annotations under
// containerd.io/snapshot/, the caller's, and the unpacker's own.
func (j *job) labels(i int) map[string]string {
	l := map[string]string{}
	for k, v := range j.layers[i].Annotations {
		if strings.HasPrefix(k, inheritedPrefix) {
			l[k] = v
		}
	}
	maps.Copy(l, j.opts.snapLabels)
	l[LabelSnapshotRef] = j.chain[i].String()
	l[LabelSnapshotDiffID] = j.diffIDs[i].String()
	if i > 0 {
		l[LabelSnapshotParent] = j.chain[i-1].String()
	}
	return l
}

func (j *job) parent(i int) string {
	if i == 0 {
		return ""
	}
	return j.chain[i-1].String()
}

// unpackLayer makes layer i's committed snapshot exist, reporting whether
// this call extracted it.
func (u *Unpacker) unpackLayer(ctx context.Context, j *job, i int) (bool, error) {
	chainID := j.chain[i].String()
	unlock, err := chainLocks.lock(ctx, lockKey(ctx, j, chainID))
	if err != nil {
		return false, fmt.Errorf("unpack layer %d (%s): %w", i, j.layers[i].Digest, err)
	}
	defer unlock()
	for attempt := 1; ; attempt++ {
		applied, err := u.extract(ctx, j, i)
		if !errors.Is(err, errCommitting) || attempt == 3 {
			if err != nil {
				return false, fmt.Errorf("unpack layer %d (%s) of %s into %s: %w", i, j.layers[i].Digest, j.manifest.Digest, j.name, err)
			}
			return applied, nil
		}
	}
}

// errCommitting means another client was committing the same chain ID;
// the layer is tried again.
var errCommitting = errors.New("chain ID is being committed by another client")

// extract is one attempt at layer i: reuse, or prepare, apply, commit.
func (u *Unpacker) extract(ctx context.Context, j *job, i int) (bool, error) {
	chainID := j.chain[i].String()
	if found, err := u.committed(ctx, j, chainID); found || err != nil {
		return false, err
	}
	labels := j.labels(i)
	key, mounts, err := u.prepare(ctx, j, i, labels)
	if err != nil || mounts == nil {
		return false, err // mounts nil: someone else committed it meanwhile
	}
	abort := func() {
		if err := j.sn.Remove(context.WithoutCancel(ctx), key); err != nil && !errdefs.IsNotFound(err) {
			u.logger.Warn("remove extraction snapshot", "key", key, "snapshotter", j.name, "error", err)
		}
	}
	if err := u.apply(ctx, j, i, mounts); err != nil {
		abort()
		return false, err
	}
	if err := j.sn.Commit(ctx, chainID, key, snapshots.WithLabels(labels)); err != nil {
		abort()
		switch {
		case errdefs.IsAlreadyExists(err):
			return false, nil
		case errdefs.IsFailedPrecondition(err):
			// Another client holds the name while it commits: wait for
			// its snapshot, and if it never appears, try again.
			if found, serr := u.waitCommitted(ctx, j, chainID); found || serr != nil {
				return false, serr
			}
			return false, fmt.Errorf("commit %s: %w: %w", chainID, errCommitting, err)
		}
		return false, fmt.Errorf("commit snapshot %s: %w", chainID, err)
	}
	u.labelUncompressed(ctx, j, i)
	return true, nil
}

// committed reports whether chainID is a committed snapshot already.
func (u *Unpacker) committed(ctx context.Context, j *job, chainID string) (bool, error) {
	info, err := j.sn.Stat(ctx, chainID)
	switch {
	case err == nil && info.Kind == snapshots.KindCommitted:
		return true, nil
	case err == nil:
		return false, fmt.Errorf("snapshot %s exists but is %s, not committed: %w", chainID, info.Kind, errdefs.ErrFailedPrecondition)
	case errdefs.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("stat snapshot %s: %w", chainID, err)
}

// waitCommitted polls briefly for a snapshot another client is committing.
func (u *Unpacker) waitCommitted(ctx context.Context, j *job, chainID string) (bool, error) {
	delay := 10 * time.Millisecond
	for range 10 {
		if found, err := u.committed(ctx, j, chainID); found || err != nil {
			return found, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
	return false, nil
}

// prepare creates the extraction snapshot of layer i. A nil mounts with no
// error means the committed snapshot appeared (the snapshot.ref target
// exists), so there is nothing to do.
func (u *Unpacker) prepare(ctx context.Context, j *job, i int, labels map[string]string) (string, []mount.Mount, error) {
	chainID := j.chain[i].String()
	prepLabels := labels
	if j.gcRoot {
		prepLabels = maps.Clone(labels)
		prepLabels[LabelGCRoot] = time.Now().UTC().Format(time.RFC3339)
	}
	var lastErr error
	for range 3 {
		key := fmt.Sprintf("%s-%s %s", KeyPrefix, uniquePart(), chainID)
		mounts, err := j.sn.Prepare(ctx, key, j.parent(i), snapshots.WithLabels(prepLabels))
		if err == nil {
			return key, mounts, nil
		}
		if !errdefs.IsAlreadyExists(err) {
			return "", nil, fmt.Errorf("prepare extraction snapshot %q: %w", key, err)
		}
		if found, serr := u.committed(ctx, j, chainID); found || serr != nil {
			return "", nil, serr
		}
		lastErr = err // the random key collided: try another
	}
	return "", nil, fmt.Errorf("prepare extraction snapshot for %s: %w", chainID, lastErr)
}

// apply extracts layer i onto mounts and checks its diff ID, also when the
// applier (a remote one) could not check it itself.
func (u *Unpacker) apply(ctx context.Context, j *job, i int, mounts []mount.Mount) error {
	start := time.Now()
	opts := append(append([]diff.ApplyOpt{}, j.opts.applyOpts...), diff.WithDiffID(j.diffIDs[i]))
	desc, err := u.applier.Apply(ctx, j.layers[i], mounts, opts...)
	if err != nil {
		return err
	}
	if desc.Digest != j.diffIDs[i] {
		return fmt.Errorf("layer %s has diff ID %s, but the config says %s: %w", j.layers[i].Digest, desc.Digest, j.diffIDs[i], errdefs.ErrFailedPrecondition)
	}
	u.logger.DebugContext(ctx, "layer unpacked", "layer", j.layers[i].Digest, "chain_id", j.chain[i],
		"snapshotter", j.name, "size", desc.Size, "duration", time.Since(start))
	return nil
}

// labelUncompressed records the verified diff ID on the layer blob. A
// failure only costs a later re-computation, so it is logged.
func (u *Unpacker) labelUncompressed(ctx context.Context, j *job, i int) {
	info := content.Info{Digest: j.layers[i].Digest, Labels: map[string]string{diff.LabelUncompressed: j.diffIDs[i].String()}}
	if _, err := u.content.Update(ctx, info, "labels."+diff.LabelUncompressed); err != nil {
		u.logger.Warn("label layer with its diff ID", "layer", j.layers[i].Digest, "error", err)
	}
}

// markUnpacked labels the config blob with the top chain ID.
func (u *Unpacker) markUnpacked(ctx context.Context, j *job) error {
	if len(j.chain) == 0 {
		return nil
	}
	key := LabelGCRefSnapshot + j.name
	info := content.Info{Digest: j.config.Digest, Labels: map[string]string{key: j.chain[len(j.chain)-1].String()}}
	if _, err := u.content.Update(ctx, info, "labels."+key); err != nil {
		return fmt.Errorf("unpack %s: label config %s: %w", j.manifest.Digest, j.config.Digest, err)
	}
	return nil
}

// uniquePart makes extraction keys of concurrent unpacks differ.
func uniquePart() string {
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%d-%s", time.Now().Nanosecond(), base64.URLEncoding.EncodeToString(b[:]))
}

// lockKey identifies a chain ID in a snapshotter and namespace.
func lockKey(ctx context.Context, j *job, chainID string) chainKey {
	ns, _ := namespaces.Namespace(ctx)
	return chainKey{sn: snapshotterIdentity(j), ns: ns, chainID: chainID}
}
