package storage

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/berthd/berth/core/snapshots"
	"golang.org/x/sys/unix"
)

// DiskUsage measures the tree at dir: the inodes in it, each hard-linked
// inode once, and the disk space they occupy (allocated blocks, so sparse
// files count what they really use).
func DiskUsage(ctx context.Context, dir string) (snapshots.Usage, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var u snapshots.Usage
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		// Only hard-linked files can be met twice; directories' link
		// counts only say how many subdirectories they have.
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			key := inode{uint64(st.Dev), st.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		u.Inodes++
		u.Size += st.Blocks * 512
		return nil
	})
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("measure disk usage of %s: %w", dir, err)
	}
	return u, nil
}
