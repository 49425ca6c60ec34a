package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/mountspec"
	"github.com/berthd/berth/core/volumes"
)

// rootfsDir is where berthd mounts the root filesystem of container id,
// with its volumes, binds and tmpfs mounts inside, before its task is
// created. ".rootfs" cannot be a namespace's name (they start with a
// letter or digit), so it never meets the per-namespace folders beside it.
func (m *Manager) rootfsDir(ns, id string) string {
	return filepath.Join(m.o.State, ".rootfs", ns, id)
}

// prepareRootfs gives a run of r its mounts and returns the rootfs mounts
// to hand to the runtime. A container without mounts keeps its snapshot's
// mounts, which the shim mounts itself. Otherwise berthd mounts the
// snapshot on rootfsDir, mounts every volume, bind and tmpfs inside it,
// parents first, and hands the runtime a recursive bind of the whole tree:
// runc bind-mounts the rootfs recursively into the container, so the
// mounts need no entries in the runtime spec.
//
// This is mountspec's race-free way: destinations are resolved inside the
// root without following symlinks out of it (an image's /data -> /etc
// lands on the container's /etc), and sources are opened and mounted by
// descriptor, a bind's from the real path checked at create, refusing any
// symlink swapped in since.
func (m *Manager) prepareRootfs(ctx context.Context, ns string, r *Record, snapshot []mount.Mount) (_ []mount.Mount, err error) {
	if len(r.Config.Mounts) == 0 {
		return snapshot, nil
	}
	dir := m.rootfsDir(ns, r.ID)
	// A run berthd did not see to its end may have left the tree.
	if err := unmountRootfs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create root filesystem folder: %w", err)
	}
	defer func() {
		if err != nil {
			m.releaseRunMounts(context.WithoutCancel(ctx), ns, r)
		}
	}()
	if err := mount.All(snapshot, dir); err != nil {
		return nil, err
	}
	// Private: the mounts below neither propagate elsewhere nor receive
	// others, and the runtime's recursive bind is a copy, not a peer.
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("make root filesystem private: %w", err)
	}
	for _, mp := range byDepth(r.Config.Mounts) {
		if err := m.mountInto(ctx, dir, r.ID, mp); err != nil {
			return nil, fmt.Errorf("%s mount at %s: %w", mp.Type, mp.Destination, err)
		}
	}
	return []mount.Mount{{Type: "bind", Source: dir, Options: []string{"rbind"}}}, nil
}

// byDepth sorts mounts so that a mount comes after those over its
// parents, as docker orders them: by the number of path components.
func byDepth(mps []MountPoint) []MountPoint {
	out := slices.Clone(mps)
	slices.SortStableFunc(out, func(a, b MountPoint) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	return out
}

// mountInto mounts mp inside rootfs for container id.
func (m *Manager) mountInto(ctx context.Context, rootfs, id string, mp MountPoint) error {
	switch mp.Type {
	case mountspec.TypeVolume:
		if m.o.Volumes == nil {
			return fmt.Errorf("berthd has no volume store loaded")
		}
		data, err := m.o.Volumes.Mount(ctx, mp.Source, id)
		if err != nil {
			return err
		}
		if !mp.NoCopy {
			if _, err := volumes.CopyUp(ctx, rootfs, mp.Destination, data); err != nil {
				return err
			}
		}
		// The data folder is berth's own, but its path may pass through
		// a symlink (a root folder moved elsewhere): resolve it first.
		src, err := mountspec.ResolveBindSource(data)
		if err != nil {
			return err
		}
		return bindInto(rootfs, src.Path, mp)
	case mountspec.TypeBind:
		return bindInto(rootfs, mp.Source, mp)
	case mountspec.TypeTmpfs:
		return tmpfsInto(rootfs, mp)
	}
	return fmt.Errorf("unknown mount type %q", mp.Type)
}

// bindInto binds the real path src at mp's destination inside rootfs,
// both ends held by descriptor.
func bindInto(rootfs, src string, mp MountPoint) error {
	f, err := mountspec.OpenBindSource(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = mountspec.BindInto(f, rootfs, mp.Destination, mp.ReadOnly, mp.Propagation)
	return err
}

// tmpfsInto mounts a tmpfs at mp's destination inside rootfs, resolved
// there and mounted on a descriptor of the resolved place.
func tmpfsInto(rootfs string, mp MountPoint) error {
	resolved, err := mountspec.ResolveDestination(rootfs, mp.Destination)
	if err != nil {
		return err
	}
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer root.Close()
	h, err := pathrs.OpenatInRoot(root, resolved)
	if err != nil {
		return fmt.Errorf("open %s in the container: %w", resolved, err)
	}
	defer h.Close()
	sm := mp.SpecMount("", resolved)
	flags, data := mount.ParseOptions(sm.Options)
	if err := unix.Mount("tmpfs", "/proc/self/fd/"+strconv.Itoa(int(h.Fd())), "tmpfs", flags, data); err != nil {
		return fmt.Errorf("mount tmpfs (%s) at %s: %w", strings.Join(sm.Options, ","), resolved, err)
	}
	return nil
}

// releaseRunMounts undoes prepareRootfs once r's task is gone (at its
// exit, once the state is recorded, or after a failed start): the tree is
// unmounted and r's volumes are told it stopped using them. For a
// container without mounts it costs one stat.
func (m *Manager) releaseRunMounts(ctx context.Context, ns string, r *Record) {
	if err := unmountRootfs(m.rootfsDir(ns, r.ID)); err != nil {
		slog.Warn("unmount container root filesystem", "id", r.ID, "error", err)
	}
	if m.o.Volumes == nil {
		return
	}
	for _, mp := range r.Config.Mounts {
		if mp.Type != mountspec.TypeVolume {
			continue
		}
		if err := m.o.Volumes.Unmount(ctx, mp.Source, r.ID); err != nil {
			slog.Warn("unmount volume", "id", r.ID, "volume", mp.Source, "error", err)
		}
	}
}

// unmountRootfs unmounts everything at or below dir and removes the
// folder. The folder is removed only once empty, never recursively: if a
// mount stayed, removing files through it would destroy the container's
// layer or a volume's data.
func unmountRootfs(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := mount.UnmountRecursive(dir, 0); err != nil {
		if err := mount.UnmountRecursive(dir, unix.MNT_DETACH); err != nil {
			return err
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove root filesystem folder: %w", err)
	}
	return nil
}
