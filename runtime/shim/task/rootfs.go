package task

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/api/types"

	"github.com/berthd/berth/core/mount"
)

// mountRootfs mounts the request's rootfs mounts, in order, on
// <bundle>/rootfs.
func (c *container) mountRootfs(mounts []*types.Mount) error {
	target := filepath.Join(c.bundle, RootfsDir)
	if err := os.Mkdir(target, 0o711); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create rootfs directory: %w", err)
	}
	ms := make([]mount.Mount, 0, len(mounts))
	for _, m := range mounts {
		ms = append(ms, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	c.rootfs = target
	if err := mount.All(ms, target); err != nil {
		c.unmountRootfs()
		return fmt.Errorf("mount rootfs: %w", err)
	}
	return nil
}

// unmountRootfs unmounts everything on the rootfs the shim mounted. A
// failure is logged: the delete command and the daemon's bundle cleanup try
// again.
func (c *container) unmountRootfs() {
	if c.rootfs == "" {
		return
	}
	if err := UnmountRootfs(c.bundle); err != nil {
		logger(c.init).Error("unmount rootfs", "error", err)
		return
	}
	c.rootfs = ""
}

// UnmountRootfs unmounts every mount at or below <bundle>/rootfs.
func UnmountRootfs(bundle string) error {
	return mount.UnmountRecursive(filepath.Join(bundle, RootfsDir), 0)
}
