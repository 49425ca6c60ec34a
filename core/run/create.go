package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthd/berth/core/containers"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/core/run/names"
	"github.com/berthd/berth/core/snapshots"
)

type typeurlAny = typeurl.Any

// SpecTypeURL is the type URL containerd clients give a container's OCI
// spec; ctr and the runtime read the spec under it.
const SpecTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

// LabelStopSignal is the label containerd's client sets to the image's
// stop signal; berth sets it too, for ctr.
const LabelStopSignal = "io.containerd.image.config.stop-signal"

// minMemory is Docker's lower bound for --memory: less cannot even start
// the runtime's init.
const minMemory = 6 << 20

// imageInfo is what create needs from an image.
type imageInfo struct {
	img      images.Image
	manifest ocispec.Descriptor
	config   ocispec.Image
	configID string
	chainID  string
}

// Create makes a container named name ("" picks one) from o. On error
// nothing is left behind.
func (m *Manager) Create(ctx context.Context, name string, o Options) (Record, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return Record{}, err
	}
	if err := m.validate(name, &o); err != nil {
		return Record{}, err
	}
	info, err := m.image(ctx, o.Image, o.Platform)
	if err != nil {
		return Record{}, err
	}
	if err := m.prepareNetwork(ctx, &o, info.config.Config); err != nil {
		return Record{}, err
	}
	mounts, err := m.parseMounts(ctx, o.MountOptions, info.config.Config)
	if err != nil {
		return Record{}, err
	}
	snName, sn, err := m.o.Unpacker.Snapshotter(ctx, o.Snapshotter)
	if err != nil {
		return Record{}, err
	}
	if err := m.ensureUnpacked(ctx, info, snName, sn, o.Platform); err != nil {
		return Record{}, err
	}
	id := names.NewID()
	if name == "" {
		name, err = m.generateName(ctx, ns)
		if err != nil {
			return Record{}, err
		}
	}
	release, err := m.reserveName(ctx, ns, name, id)
	if err != nil {
		return Record{}, err
	}
	defer release()
	o.Snapshotter = snName
	o.Log.Path = m.logPath(ns, id)
	if o.Log.MaxSize == 0 {
		o.Log.MaxSize = m.o.LogMaxSize
	}
	if o.Log.MaxFile == 0 {
		o.Log.MaxFile = m.o.LogMaxFile
	}
	cfg := Config{
		Name: name, Created: time.Now().UTC(), Options: o,
		ImageID: info.configID, Manifest: info.manifest.Digest.String(), ManifestMediaType: info.manifest.MediaType,
		ImageStopSignal: info.config.Config.StopSignal, ChainID: info.chainID,
	}
	var undoVolumes func()
	if cfg.Mounts, undoVolumes, err = m.acquireVolumes(ctx, id, mounts); err != nil {
		return Record{}, err
	}
	rec, err := m.createRecord(ctx, ns, id, cfg, info, sn)
	if err != nil {
		undoVolumes()
		return Record{}, err
	}
	return rec, nil
}

// validate checks what the runtime spec options do not.
func (m *Manager) validate(name string, o *Options) error {
	if name != "" {
		if err := names.Validate(name); err != nil {
			return err
		}
	}
	if o.Image == "" {
		return fmt.Errorf("an image is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := o.RestartPolicy.Validate(); err != nil {
		return err
	}
	if o.RestartPolicy.Name == "" {
		o.RestartPolicy.Name = RestartNo
	}
	if o.AutoRemove && o.RestartPolicy.Name != RestartNo {
		return fmt.Errorf("conflicting options: restart policy %q and auto-remove (--rm): %w", o.RestartPolicy, errdefs.ErrInvalidArgument)
	}
	if o.Memory != 0 && o.Memory < minMemory {
		return fmt.Errorf("memory limit %d bytes: the minimum is 6MB: %w", o.Memory, errdefs.ErrInvalidArgument)
	}
	if o.StopSignal != "" {
		if _, err := oci.ParseSignal(o.StopSignal); err != nil {
			return fmt.Errorf("stop signal: %w", err)
		}
	}
	if o.Log.MaxSize < 0 || o.Log.MaxFile < 0 {
		return fmt.Errorf("log max size and max file must not be negative: %w", errdefs.ErrInvalidArgument)
	}
	for _, u := range o.Ulimits {
		if _, err := oci.ParseUlimit(u); err != nil {
			return err
		}
	}
	if o.Init && m.o.InitBinary == "" {
		return fmt.Errorf("--init: no init binary is installed (berth-init, tini-static, docker-init or catatonit; or set init_path in berthd's config): %w", errdefs.ErrFailedPrecondition)
	}
	if o.Runtime == "" {
		o.Runtime = m.o.DefaultRuntime
	}
	if o.Platform != "" {
		if _, err := platforms.Parse(o.Platform); err != nil {
			return fmt.Errorf("platform %q: %v: %w", o.Platform, err, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func platformMatcher(p string) platforms.MatchComparer {
	if p == "" {
		return platforms.Default()
	}
	spec, err := platforms.Parse(p)
	if err != nil {
		return platforms.Default()
	}
	return platforms.Only(spec)
}

// image finds an image and reads its manifest and config.
func (m *Manager) image(ctx context.Context, ref, platform string) (imageInfo, error) {
	img, err := m.o.Images.Get(ctx, ref)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return imageInfo{}, fmt.Errorf("image %q not found: import or pull it: %w", ref, errdefs.ErrNotFound)
		}
		return imageInfo{}, err
	}
	resolved, err := images.ResolveManifest(ctx, m.o.Content, img.Target, platformMatcher(platform))
	if err != nil {
		return imageInfo{}, fmt.Errorf("image %q: %w", ref, err)
	}
	cfg, err := images.ReadConfig(ctx, m.o.Content, resolved.Manifest.Config)
	if err != nil {
		return imageInfo{}, fmt.Errorf("image %q: config: %w", ref, err)
	}
	info := imageInfo{img: img, manifest: resolved.Descriptor, config: cfg, configID: resolved.Manifest.Config.Digest.String()}
	if len(cfg.RootFS.DiffIDs) > 0 {
		info.chainID = images.ChainID(cfg.RootFS.DiffIDs).String()
	}
	return info, nil
}

// ensureUnpacked unpacks the image unless its top snapshot exists.
func (m *Manager) ensureUnpacked(ctx context.Context, info imageInfo, snName string, sn snapshots.Snapshotter, platform string) error {
	if info.chainID == "" {
		return nil
	}
	if _, err := sn.Stat(ctx, info.chainID); err == nil {
		return nil
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	_, _, err := m.o.Unpacker.Unpack(ctx, info.img, snName, platformMatcher(platform))
	return err
}

// generateName picks a free adjective_noun name.
func (m *Manager) generateName(ctx context.Context, ns string) (string, error) {
	all, err := m.o.Containers.List(ctx)
	if err != nil {
		return "", err
	}
	taken := map[string]bool{}
	for _, c := range all {
		taken[c.Labels[LabelName]] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return names.Generate(func(n string) bool {
		_, reserved := m.reserved[key(ns, n)]
		return taken[n] || reserved
	}), nil
}

// reserveName holds name for container id until release, failing with
// errdefs.ErrAlreadyExists naming the holder when another has it.
func (m *Manager) reserveName(ctx context.Context, ns, name, id string) (func(), error) {
	k := key(ns, name)
	m.mu.Lock()
	if holder, ok := m.reserved[k]; ok {
		m.mu.Unlock()
		return nil, nameConflict(name, holder)
	}
	m.reserved[k] = id
	m.mu.Unlock()
	release := func() {
		m.mu.Lock()
		delete(m.reserved, k)
		m.mu.Unlock()
	}
	holders, err := m.o.Containers.List(ctx, nameFilter(name))
	if err != nil {
		release()
		return nil, err
	}
	for _, h := range holders {
		if h.ID != id {
			release()
			return nil, nameConflict(name, h.ID)
		}
	}
	return release, nil
}

func nameConflict(name, holder string) error {
	return fmt.Errorf("the container name %q is already in use by container %s: remove or rename that container, or choose another name: %w",
		name, names.Short(holder), errdefs.ErrAlreadyExists)
}

// createRecord writes the record, then prepares the writable snapshot and
// completes the spec from its files. The record comes first so that
// garbage collection sees the snapshot referenced from the moment it
// exists.
func (m *Manager) createRecord(ctx context.Context, ns, id string, cfg Config, info imageInfo, sn snapshots.Snapshotter) (rec Record, err error) {
	// A first spec without the image's files: exact unless the user or
	// groups need /etc/passwd and /etc/group.
	spec, err := m.spec(ctx, ns, id, cfg.Options, info.config, "")
	if err != nil && !errdefs.IsInvalidArgument(err) {
		return Record{}, err
	}
	needFiles := err != nil
	if needFiles {
		// A named user: validate the rest of the options with root now,
		// so bad ones fail before anything is written.
		o := cfg.Options
		o.User, o.GroupAdd = "", nil
		if spec, err = m.spec(ctx, ns, id, o, info.config, ""); err != nil {
			return Record{}, err
		}
	}
	cfg.Args = spec.Process.Args
	c, err := m.newContainer(id, cfg, info, spec)
	if err != nil {
		return Record{}, err
	}
	created, err := m.o.Containers.Create(ctx, c)
	if err != nil {
		return Record{}, fmt.Errorf("create container record: %w", err)
	}
	defer func() {
		if err != nil {
			m.discard(ctx, ns, id, cfg.Options.Snapshotter)
		}
	}()
	mounts, err := sn.Prepare(ctx, id, info.chainID)
	if err != nil {
		return Record{}, fmt.Errorf("prepare writable layer of container %s: %w", names.Short(id), err)
	}
	if err := os.MkdirAll(m.stateDir(ns, id), 0o700); err != nil {
		return Record{}, err
	}
	if err := os.MkdirAll(m.logDir(ns, id), 0o700); err != nil {
		return Record{}, err
	}
	var full *specs.Spec
	err = mount.WithTempMount(readOnly(mounts), func(root string) error {
		var err error
		full, err = m.spec(ctx, ns, id, cfg.Options, info.config, root)
		return err
	})
	if err != nil {
		return Record{}, err
	}
	if !needFiles && reflect.DeepEqual(full, spec) {
		return decodeRecord(created)
	}
	any, err := specAny(full)
	if err != nil {
		return Record{}, err
	}
	created.Spec = any
	updated, err := m.o.Containers.Update(ctx, created, "spec")
	if err != nil {
		return Record{}, fmt.Errorf("record spec of container %s: %w", names.Short(id), err)
	}
	return decodeRecord(updated)
}

// discard removes what a failed create made.
func (m *Manager) discard(ctx context.Context, ns, id, snapshotter string) {
	ctx = context.WithoutCancel(ctx)
	if err := m.o.Containers.Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		slog.Warn("remove record of failed container", "id", id, "error", err)
	}
	if sn := m.o.Snapshotters(snapshotter); sn != nil {
		if err := sn.Remove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("remove snapshot of failed container", "id", id, "error", err)
		}
	}
	m.removeFiles(ns, id)
}

func readOnly(mounts []mount.Mount) []mount.Mount {
	out := make([]mount.Mount, len(mounts))
	for i, mt := range mounts {
		mt.Options = append(append([]string(nil), mt.Options...), "ro")
		out[i] = mt
	}
	return out
}

// spec generates the runtime spec; rootfs is the mounted root ("" for
// none: numeric users only).
func (m *Manager) spec(ctx context.Context, ns, id string, o Options, img ocispec.Image, rootfs string) (*specs.Spec, error) {
	rc := &oci.RunConfig{
		Rootfs: rootfs,
		Image:  img.Config,
		Overrides: oci.ImageOverrides{
			Entrypoint: o.Entrypoint, EntrypointSet: o.EntrypointSet, Args: o.Cmd,
			Env: o.Env, WorkingDir: o.WorkingDir, User: o.User,
		},
		GroupAdd:       o.GroupAdd,
		Hostname:       o.Hostname,
		HostNetwork:    isHostNetwork(o),
		TTY:            o.Tty,
		Sysctls:        o.Sysctls,
		Memory:         o.Memory,
		MemorySwap:     o.MemorySwap,
		NanoCPUs:       o.NanoCPUs,
		CPUShares:      uint64(max(0, o.CPUShares)),
		CpusetCpus:     o.CpusetCpus,
		PidsLimit:      o.PidsLimit,
		CapAdd:         o.CapAdd,
		CapDrop:        o.CapDrop,
		Privileged:     o.Privileged,
		ReadonlyRootfs: o.ReadOnly,
		ShmSize:        o.ShmSize,
	}
	for _, u := range o.Ulimits {
		r, err := oci.ParseUlimit(u)
		if err != nil {
			return nil, err
		}
		rc.Ulimits = append(rc.Ulimits, r)
	}
	if o.Init {
		rc.InitBinary = m.o.InitBinary
	}
	return rc.Spec(ctx, ns, id)
}

func specAny(s *specs.Spec) (typeurl.Any, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("marshal spec: %w", err)
	}
	return &jsonAny{typeURL: SpecTypeURL, value: b}, nil
}

// Spec decodes a container's runtime spec.
func (r Record) Spec() (*specs.Spec, error) {
	if r.Container.Spec == nil {
		return nil, fmt.Errorf("container %s has no spec: %w", r.ID, errdefs.ErrFailedPrecondition)
	}
	var s specs.Spec
	if err := json.Unmarshal(r.Container.Spec.GetValue(), &s); err != nil {
		return nil, fmt.Errorf("container %s: spec: %w", r.ID, err)
	}
	return &s, nil
}

// newContainer builds the containerd record.
func (m *Manager) newContainer(id string, cfg Config, info imageInfo, spec *specs.Spec) (containers.Container, error) {
	specA, err := specAny(spec)
	if err != nil {
		return containers.Container{}, err
	}
	cfgA, err := marshalExt(typeConfig, cfg)
	if err != nil {
		return containers.Container{}, err
	}
	stA, err := marshalExt(typeState, State{Status: StatusCreated})
	if err != nil {
		return containers.Container{}, err
	}
	lbls := maps.Clone(cfg.Options.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	lbls[LabelName] = cfg.Name
	lbls[LabelImageRef] = cfg.Options.Image
	if s := info.config.Config.StopSignal; s != "" {
		lbls[LabelStopSignal] = s
	}
	lbls[LabelImageContent] = info.manifest.Digest.String()
	return containers.Container{
		ID:          id,
		Labels:      lbls,
		Image:       cfg.Options.Image,
		Runtime:     containers.RuntimeInfo{Name: cfg.Options.Runtime},
		Spec:        specA,
		Snapshotter: cfg.Options.Snapshotter,
		SnapshotKey: id,
		Extensions:  map[string]typeurl.Any{ExtensionConfig: cfgA, ExtensionState: stA},
	}, nil
}

// logDir holds container id's log files.
func (m *Manager) logDir(ns, id string) string {
	return filepath.Join(m.o.Root, ns, id)
}

// removeFiles deletes container id's log and FIFO folders.
func (m *Manager) removeFiles(ns, id string) {
	for _, dir := range []string{m.logDir(ns, id), m.stateDir(ns, id)} {
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Warn("remove container files", "dir", dir, "error", err)
		}
	}
}

func sortNewestFirst(rs []Record) {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Config.Created.After(rs[j].Config.Created) })
}
