package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/berthd/berth/core/archive"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/run/names"
	"github.com/berthd/berth/core/snapshots"
)

// withRoot calls fn with a host path of the container's root filesystem:
// the running task's rootfs mount, or the writable snapshot mounted on a
// temporary folder (read-only unless write). A stopped container stays
// stopped meanwhile: its lock is held, so Start waits. A stopped container
// with mounts gets them as a run would (volumes, binds, tmpfs), so a copy
// sees and writes what the container would: docker cp does the same.
func (m *Manager) withRoot(ctx context.Context, ns string, r Record, write bool, fn func(root string) error) error {
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	if run := e.run; run != nil && run.task != nil {
		e.mu.Unlock()
		return fn(run.task.Rootfs())
	}
	defer e.mu.Unlock()
	_, mounts, err := m.layerMounts(ctx, r)
	if err != nil {
		return err
	}
	if len(r.Config.Mounts) == 0 {
		if !write {
			mounts = readOnly(mounts)
		}
		return mount.WithTempMount(mounts, fn)
	}
	// The run's own folder, free while the container is stopped and its
	// lock is held. The layer is writable: mount points missing in it are
	// made, as a start would make them.
	tree, err := m.prepareRootfs(ctx, ns, &r, mounts)
	if err != nil {
		return err
	}
	defer m.releaseRunMounts(context.WithoutCancel(ctx), ns, &r)
	return fn(tree[0].Source)
}

// withLayerRoot calls fn with a read-only host path of the container's
// root filesystem without what is mounted into it (volumes, binds,
// tmpfs), as withRoot does otherwise.
func (m *Manager) withLayerRoot(ctx context.Context, ns string, r Record, fn func(root string) error) error {
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	if run := e.run; run != nil && run.task != nil {
		e.mu.Unlock()
		if len(r.Config.Mounts) == 0 {
			return fn(run.task.Rootfs())
		}
		// The task's rootfs is a recursive bind of berthd's tree; a plain
		// bind of the tree's top is the layers alone.
		return mount.WithTempMount([]mount.Mount{{Type: "bind", Source: m.rootfsDir(ns, r.ID), Options: []string{"bind", "ro"}}}, fn)
	}
	defer e.mu.Unlock()
	_, mounts, err := m.layerMounts(ctx, r)
	if err != nil {
		return err
	}
	return mount.WithTempMount(readOnly(mounts), fn)
}

// layerMounts returns the writable snapshot's mounts.
func (m *Manager) layerMounts(ctx context.Context, r Record) (snapshots.Snapshotter, []mount.Mount, error) {
	sn := m.o.Snapshotters(r.Snapshotter)
	if sn == nil || r.SnapshotKey == "" {
		return nil, nil, fmt.Errorf("container %s has no writable layer in a loaded snapshotter (%q): %w", names.Short(r.ID), r.Snapshotter, errdefs.ErrFailedPrecondition)
	}
	mounts, err := sn.Mounts(ctx, r.SnapshotKey)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: writable layer: %w", names.Short(r.ID), err)
	}
	return sn, mounts, nil
}

// overlayDirs reads a single overlay mount's upper and lower folders.
func overlayDirs(mounts []mount.Mount) (upper string, lowers []string, ok bool) {
	if len(mounts) != 1 || mounts[0].Type != "overlay" {
		return "", nil, false
	}
	for _, o := range mounts[0].Options {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "upperdir":
			upper = v
		case "lowerdir":
			lowers = strings.Split(v, ":")
		case "lowerdir+", "datadir+":
			return "", nil, false
		}
	}
	return upper, lowers, upper != "" && len(lowers) > 0
}

// lowerMounts are read-only mounts of the image layers under a writable
// overlay: the single lower folder bound, or an overlay of them all.
func lowerMounts(lowers []string) []mount.Mount {
	if len(lowers) == 1 {
		return []mount.Mount{{Type: "bind", Source: lowers[0], Options: []string{"ro", "rbind"}}}
	}
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(lowers, ":")}}}
}

// withLower calls fn with the writable layer's mounts and read-only mounts
// of the image layers below it: from the overlay's own folders, or a
// temporary view of the image's snapshot for other snapshotters.
func (m *Manager) withLower(ctx context.Context, r Record, fn func(lower, upper []mount.Mount, upperdir string) error) error {
	sn, upper, err := m.layerMounts(ctx, r)
	if err != nil {
		return err
	}
	if upperdir, lowers, ok := overlayDirs(upper); ok {
		return fn(lowerMounts(lowers), upper, upperdir)
	}
	key := "view-" + r.ID[:names.ShortLen] + "-" + randomHex(6)
	var lower []mount.Mount
	if r.Config.ChainID != "" {
		if lower, err = sn.View(ctx, key, r.Config.ChainID); err != nil {
			return fmt.Errorf("view the image layers of container %s: %w", names.Short(r.ID), err)
		}
		defer func() {
			if err := sn.Remove(context.WithoutCancel(ctx), key); err != nil {
				slog.Warn("remove temporary view of image layers", "key", key, "error", err)
			}
		}()
	}
	return fn(lower, upper, "")
}

// Diff lists what changed in a container's writable layer.
func (m *Manager) Diff(ctx context.Context, ref string) ([]archive.Change, error) {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return nil, err
	}
	var changes []archive.Change
	collect := func(c archive.Change) error {
		changes = append(changes, c)
		return nil
	}
	err = m.withLower(ctx, r, func(lower, upper []mount.Mount, upperdir string) error {
		return withMounted(lower, func(lowerRoot string) error {
			if upperdir != "" {
				// The upper folder is the diff: only it is walked.
				return archive.OverlayChanges(ctx, upperdir, lowerRoot, collect)
			}
			return m.withRoot(ctx, ns, r, false, func(root string) error {
				return archive.Changes(ctx, lowerRoot, root, collect)
			})
		})
	})
	return changes, err
}

// withMounted mounts mounts on a temporary folder (nothing when empty:
// fn gets "") and calls fn.
func withMounted(mounts []mount.Mount, fn func(root string) error) error {
	if len(mounts) == 0 {
		return fn("")
	}
	if len(mounts) == 1 && mounts[0].Type == "bind" {
		return fn(mounts[0].Source)
	}
	return mount.WithTempMount(mounts, fn)
}

// PathStat describes a path in a container.
type PathStat struct {
	// Name is the top entry's name in the path's tar (see statIn).
	Name       string
	Size       int64
	Mode       os.FileMode
	ModTime    time.Time
	LinkTarget string
}

// StatPath describes path in container ref; a symlink is described itself
// unless follow. Symlinks on the way resolve inside the container.
func (m *Manager) StatPath(ctx context.Context, ref, p string, follow bool) (PathStat, error) {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return PathStat{}, err
	}
	var st PathStat
	err = m.withRoot(ctx, ns, r, false, func(root string) error {
		st, err = statIn(root, p, follow)
		return err
	})
	return st, err
}

// inContainer is p as a process in the container resolves it: relative
// to /, and ".." at / stays at /.
func inContainer(p string) string { return path.Clean("/" + p) }

// statIn stats p inside root as the container would see it. Name is
// what TarPath names the top entry: the last component of p, or with
// follow of what p resolves to; empty when that is the root itself (the
// tar then holds the root's content).
func statIn(root, p string, follow bool) (PathStat, error) {
	clean := inContainer(p)
	dir, base := path.Split(clean)
	host, err := securejoin.SecureJoin(root, dir)
	if err != nil {
		return PathStat{}, err
	}
	full := host
	if base != "" {
		full = host + "/" + base
		if follow {
			if full, err = securejoin.SecureJoin(root, clean); err != nil {
				return PathStat{}, err
			}
		}
	}
	fi, err := os.Lstat(full)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return PathStat{}, fmt.Errorf("could not find %s in the container: %w", clean, errdefs.ErrNotFound)
		}
		return PathStat{}, err
	}
	st := PathStat{Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}
	if rel := strings.TrimPrefix(strings.TrimPrefix(full, strings.TrimSuffix(root, "/")), "/"); rel != "" {
		st.Name = path.Base(rel)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		st.LinkTarget, _ = os.Readlink(full)
	}
	return st, nil
}

// CopyFrom writes path of container ref to w as a tar (its top entry
// named after path's last component), after calling stat with its
// description.
func (m *Manager) CopyFrom(ctx context.Context, ref, p string, follow bool, stat func(PathStat) error, w io.Writer) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	return m.withRoot(ctx, ns, r, false, func(root string) error {
		st, err := statIn(root, p, follow)
		if err != nil {
			return err
		}
		if err := stat(st); err != nil {
			return err
		}
		var opts []archive.CopyOpt
		if follow {
			opts = append(opts, archive.WithFollowLink())
		}
		return archive.TarPath(ctx, w, root, inContainer(p), opts...)
	})
}

// CopyTo extracts the tar r under dir, a directory of container ref.
// Names cannot climb out of dir and symlinks resolve inside the
// container, so nothing is written outside its root; owners are kept as
// the tar says.
func (m *Manager) CopyTo(ctx context.Context, ref, dir string, r io.Reader) error {
	ns, rec, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	if rec.Config.Options.ReadOnly && m.isRunning(ns, rec.ID) {
		return fmt.Errorf("container %s has a read-only root filesystem: %w", names.Short(rec.ID), errdefs.ErrFailedPrecondition)
	}
	return m.withRoot(ctx, ns, rec, true, func(root string) error {
		_, err := archive.UntarInto(ctx, root, inContainer(dir), r, archive.WithSameOwner(true))
		return err
	})
}

func (m *Manager) isRunning(ns, id string) bool {
	e := m.entry(ns, id)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.run != nil
}

// Export writes container ref's whole filesystem (without what is mounted
// into it) to w as a tar.
func (m *Manager) Export(ctx context.Context, ref string, w io.Writer) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	return m.withLayerRoot(ctx, ns, r, func(root string) error {
		return archive.WriteDiff(ctx, w, "", root)
	})
}
