package testimages

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// FSEntry is what one path of an unpacked root filesystem should be.
type FSEntry struct {
	Type byte // tar.TypeReg, TypeDir, TypeSymlink, TypeChar, or TypeLink (a hard link)
	// Mode is the permission bits in tar form (0o1777, 0o4755); not checked
	// for symlinks and hard links.
	Mode     int64
	UID, GID int
	Data     string // content of a regular file, checked unless AnyData
	AnyData  bool
	// Linkname is a symlink's target, or for TypeLink the root-relative path
	// that must be the same inode.
	Linkname     string
	Major, Minor int64 // of a device
}

// Expectation describes an unpacked root filesystem: paths that must exist
// as described, paths that must not exist, and (always) no leftover
// whiteout files anywhere.
type Expectation struct {
	Present map[string]FSEntry // root-relative paths, no leading slash
	Absent  []string
}

// Check compares the tree at root with e and reports every mismatch.
func (e Expectation) Check(root string) error {
	var errs []error
	names := make([]string, 0, len(e.Present))
	for name := range e.Present {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := checkEntry(root, name, e.Present[name]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	for _, name := range e.Absent {
		_, err := os.Lstat(filepath.Join(root, name))
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			errs = append(errs, fmt.Errorf("%s: should not exist (lstat: %v)", name, err))
		}
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), WhiteoutPrefix) {
			errs = append(errs, fmt.Errorf("%s: whiteout file left in the root filesystem", p))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("walk %s: %w", root, err))
	}
	return errors.Join(errs...)
}

func checkEntry(root, name string, want FSEntry) error {
	p := filepath.Join(root, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("no stat_t for %s", p)
	}
	if want.Type == tar.TypeLink {
		return checkHardlink(root, want.Linkname, st)
	}
	if got := typeOf(fi.Mode()); got != want.Type {
		return fmt.Errorf("type %q, want %q", got, want.Type)
	}
	if int(st.Uid) != want.UID || int(st.Gid) != want.GID {
		return fmt.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, want.UID, want.GID)
	}
	switch want.Type {
	case tar.TypeSymlink:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if target != want.Linkname {
			return fmt.Errorf("symlink to %q, want %q", target, want.Linkname)
		}
		return nil
	case tar.TypeReg:
		if !want.AnyData {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if string(data) != want.Data {
				return fmt.Errorf("content %q, want %q", data, want.Data)
			}
		}
	case tar.TypeChar:
		if maj, min := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev)); maj != want.Major || min != want.Minor {
			return fmt.Errorf("device %d,%d, want %d,%d", maj, min, want.Major, want.Minor)
		}
	}
	if got := tarMode(fi.Mode()); got != want.Mode {
		return fmt.Errorf("mode %#o, want %#o", got, want.Mode)
	}
	return nil
}

func checkHardlink(root, target string, st *syscall.Stat_t) error {
	fi, err := os.Lstat(filepath.Join(root, target))
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	tst, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || tst.Ino != st.Ino || tst.Dev != st.Dev {
		return fmt.Errorf("not a hard link of %s", target)
	}
	return nil
}

func typeOf(m fs.FileMode) byte {
	switch {
	case m.IsRegular():
		return tar.TypeReg
	case m.IsDir():
		return tar.TypeDir
	case m&fs.ModeSymlink != 0:
		return tar.TypeSymlink
	case m&fs.ModeCharDevice != 0:
		return tar.TypeChar
	case m&fs.ModeDevice != 0:
		return tar.TypeBlock
	case m&fs.ModeNamedPipe != 0:
		return tar.TypeFifo
	}
	return '?'
}

// tarMode converts Go's mode bits to the tar/stat form.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
