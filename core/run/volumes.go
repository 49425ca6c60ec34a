package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/mountspec"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/volumes"
)

// MountOptions are a container's mount flags as given; create resolves
// them, with the image's VOLUMEs, into Config.Mounts.
type MountOptions struct {
	// Binds are -v values: name:/ctr, /ctr or /host:/ctr, with options.
	Binds []string `json:"Binds,omitempty"`
	// MountFlags are --mount values (type=volume|bind|tmpfs,src=,dst=,...).
	MountFlags []string `json:"MountFlags,omitempty"`
	// Tmpfs are --tmpfs values, /ctr[:options].
	Tmpfs []string `json:"Tmpfs,omitempty"`
	// VolumesFrom are --volumes-from values, CONTAINER[:ro|rw].
	VolumesFrom []string `json:"VolumesFrom,omitempty"`
}

// MountPoint is one mount of a container as create resolved it: a volume
// by the name it got (Source; anonymous ones get a random name), a bind by
// the real path that was checked (Source), a tmpfs.
type MountPoint struct {
	mountspec.Mount
	// HostPath is where the data lives on the host: the volume's
	// directory, the bind's real path; empty for tmpfs.
	HostPath string `json:"host_path,omitempty"`
}

// Name is the volume's name ("" for binds and tmpfs).
func (mp MountPoint) Name() string {
	if mp.Type == mountspec.TypeVolume {
		return mp.Source
	}
	return ""
}

// Mode is the mount's options as docker -v words (ro, z, nocopy, a
// propagation), comma-separated.
func (mp MountPoint) Mode() string {
	var words []string
	if mp.ReadOnly {
		words = append(words, "ro")
	}
	for _, w := range []string{mp.Relabel, mp.Propagation} {
		if w != "" {
			words = append(words, w)
		}
	}
	if mp.NoCopy {
		words = append(words, "nocopy")
	}
	return strings.Join(words, ",")
}

// parseMounts turns o's mount flags, the mounts of its --volumes-from
// containers and the image's VOLUMEs into the container's mounts, as
// docker combines them, and checks what can be checked before anything
// is created: every bind source exists (it is kept as its real path) and
// every volume driver named is loaded.
func (m *Manager) parseMounts(ctx context.Context, o MountOptions, img ocispec.ImageConfig) ([]mountspec.Mount, error) {
	user, err := parseUserMounts(o)
	if err != nil {
		return nil, err
	}
	var inherited []mountspec.Mount
	for _, s := range o.VolumesFrom {
		ref, mode, err := mountspec.ParseVolumesFrom(s)
		if err != nil {
			return nil, err
		}
		src, err := m.Resolve(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("--volumes-from %s: %w", ref, err)
		}
		inherited = append(inherited, mountspec.InheritMounts(specMounts(src.Config.Mounts), mode)...)
	}
	image, err := mountspec.ImageVolumes(img.Volumes)
	if err != nil {
		return nil, err
	}
	all, err := mountspec.Combine(user, inherited, image)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if err := m.checkMount(&all[i]); err != nil {
			return nil, err
		}
	}
	return all, nil
}

// parseUserMounts parses -v, --mount and --tmpfs values, in that order.
func parseUserMounts(o MountOptions) ([]mountspec.Mount, error) {
	var out []mountspec.Mount
	for _, group := range []struct {
		values []string
		parse  func(string) (mountspec.Mount, error)
	}{{o.Binds, mountspec.ParseVolume}, {o.MountFlags, mountspec.ParseMount}, {o.Tmpfs, mountspec.ParseTmpfs}} {
		for _, v := range group.values {
			mt, err := group.parse(v)
			if err != nil {
				return nil, err
			}
			out = append(out, mt)
		}
	}
	return out, nil
}

func specMounts(mps []MountPoint) []mountspec.Mount {
	out := make([]mountspec.Mount, len(mps))
	for i, mp := range mps {
		out[i] = mp.Mount
	}
	return out
}

// checkMount checks a bind's source (keeping its real path) or a
// volume's driver.
func (m *Manager) checkMount(mt *mountspec.Mount) error {
	switch mt.Type {
	case mountspec.TypeBind:
		src, err := mountspec.ResolveBindSource(mt.Source)
		if err != nil {
			return err
		}
		mt.Source = src.Path
	case mountspec.TypeVolume:
		if m.o.Volumes == nil {
			return fmt.Errorf("volume at %s: berthd has no volume store loaded: %w", mt.Destination, errdefs.ErrUnavailable)
		}
		if mt.Driver != "" && !slices.Contains(m.o.Volumes.Drivers(), mt.Driver) {
			return fmt.Errorf("volume at %s: volume driver %q is not available (available: %s): %w",
				mt.Destination, mt.Driver, strings.Join(m.o.Volumes.Drivers(), ", "), errdefs.ErrNotFound)
		}
	}
	return nil
}

// acquireVolumes records container id as a user of each of its volumes,
// creating named volumes on first use and anonymous ones, and returns the
// mounts with the volumes' names and places. On error, and when the
// caller calls undo (its create failed later), what it did is undone:
// the container stops using the volumes, and the volumes it created go.
func (m *Manager) acquireVolumes(ctx context.Context, id string, mounts []mountspec.Mount) ([]MountPoint, func(), error) {
	var mps []MountPoint
	var created []string // named volumes this call created
	undo := func() {
		ctx := context.WithoutCancel(ctx)
		for _, mp := range mps {
			if mp.Type != mountspec.TypeVolume {
				continue
			}
			if err := m.o.Volumes.Release(ctx, mp.Source, id, true); err != nil {
				slog.Warn("release volume of a failed create", "volume", mp.Source, "error", err)
			}
		}
		for _, name := range created {
			// Refused (and kept) when another container took it meanwhile.
			if err := m.o.Volumes.Remove(ctx, name, false); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
				slog.Warn("remove volume of a failed create", "volume", name, "error", err)
			}
		}
	}
	for _, mt := range mounts {
		mp := MountPoint{Mount: mt}
		switch mt.Type {
		case mountspec.TypeVolume:
			before := time.Now()
			v, err := m.o.Volumes.Acquire(ctx, id, volumes.Spec{Name: mt.Source, Driver: mt.Driver, Options: mt.DriverOptions, Labels: mt.Labels})
			if err != nil {
				undo()
				return nil, nil, fmt.Errorf("volume at %s: %w", mt.Destination, err)
			}
			if mt.Source != "" && !v.CreatedAt.Before(before) {
				created = append(created, v.Name)
			}
			mp.Source, mp.Driver, mp.HostPath = v.Name, v.Driver, v.Mountpoint
			mp.DriverOptions, mp.Labels = nil, nil // the volume keeps them
		case mountspec.TypeBind:
			mp.HostPath = mt.Source
		}
		mps = append(mps, mp)
	}
	return mps, undo, nil
}

// releaseVolumes says container r no longer uses its volumes (it is being
// removed); with removeAnonymous its anonymous volumes that no other
// container uses go too. Whatever berthd mounted for its last run is
// unmounted first.
func (m *Manager) releaseVolumes(ctx context.Context, ns string, r *Record, removeAnonymous bool) {
	if err := unmountRootfs(m.rootfsDir(ns, r.ID)); err != nil {
		slog.Warn("unmount root filesystem of a removed container", "id", r.ID, "error", err)
	}
	if m.o.Volumes == nil {
		return
	}
	if err := m.o.Volumes.ReleaseAll(ctx, r.ID, removeAnonymous); err != nil {
		slog.Warn("release volumes of a removed container", "id", r.ID, "error", err)
	}
}

// ContainerRunning reports whether container id of the context's
// namespace runs, or waits to be restarted: the volume store's
// RunningFunc, so that a forced volume removal spares running containers.
// It reads the record only: the store calls it holding a volume's lock,
// which a starting container (holding its own lock) may be waiting for.
func (m *Manager) ContainerRunning(ctx context.Context, id string) (bool, error) {
	r, err := m.get(ctx, id)
	if err != nil {
		return false, err
	}
	return r.State.Running() || r.State.Status == StatusRestarting, nil
}

// ReconcileVolumes drops the volume users that are no longer containers
// (a crash between a container's removal and the release of its volumes,
// or during a create), so those volumes can be removed and pruned again.
// Call it at start, before containers are created.
func (m *Manager) ReconcileVolumes(ctx context.Context, namespaceList []string) error {
	if m.o.Volumes == nil {
		return nil
	}
	var errs []error
	for _, ns := range namespaceList {
		nctx := namespaces.WithNamespace(ctx, ns)
		vols, err := m.o.Volumes.List(nctx, volumes.Filter{})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, v := range vols {
			for _, user := range v.Users {
				if _, err := m.o.Containers.Get(nctx, user); !errdefs.IsNotFound(err) {
					continue
				}
				slog.Info("release volume of a container that no longer exists", "namespace", ns, "volume", v.Name, "container", user)
				if err := m.o.Volumes.Release(nctx, v.Name, user, false); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}
