package mount

import (
	"fmt"
	"path/filepath"
	"sort"

	"github.com/moby/sys/mountinfo"
)

// MountedUnder lists the mount points at or below dir, deepest first, so
// unmounting them in order never meets a busy parent.
func MountedUnder(dir string) ([]string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", dir, err)
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("read mount table for %s: %w", dir, err)
	}
	points := make([]string, 0, len(infos))
	for _, info := range infos {
		points = append(points, info.Mountpoint)
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points, nil
}

// UnmountRecursive unmounts every mount at or below dir, deepest first.
func UnmountRecursive(dir string, flags int) error {
	points, err := MountedUnder(dir)
	if err != nil {
		return err
	}
	for _, p := range points {
		if err := UnmountAll(p, flags); err != nil {
			return err
		}
	}
	return nil
}
