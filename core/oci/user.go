package oci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	passwdPath = "/etc/passwd"
	groupPath  = "/etc/group"
	// maxIDFile bounds how much of /etc/passwd or /etc/group is read.
	maxIDFile = 16 << 20
	// maxID is the largest uid or gid accepted, as runc does: ids at or
	// above 2^31 are reserved or mean "none" to parts of the system.
	maxID = 1<<31 - 1
)

// passwdEntry and groupEntry are the fields of /etc/passwd and /etc/group
// lines that user resolution needs.
type passwdEntry struct {
	name     string
	uid, gid uint32
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// WithUser sets the process user from a docker-style user string ("name",
// "uid", "uid:gid", "name:group", "uid:groupname"; "" means root), resolved
// against the rootfs at the host path rootfs. See ResolveUser.
func WithUser(rootfs, user string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		u, err := ResolveUser(rootfs, user)
		if err != nil {
			return err
		}
		ensureProcess(s).User = u
		return nil
	}
}

// WithAdditionalGroups adds supplementary groups (docker --group-add),
// each a group name from the rootfs' /etc/group or a numeric gid.
func WithAdditionalGroups(rootfs string, groups ...string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		p := ensureProcess(s)
		for _, g := range groups {
			gid, err := resolveGroup(rootfs, g)
			if err != nil {
				return err
			}
			if !slices.Contains(p.User.AdditionalGids, gid) {
				p.User.AdditionalGids = append(p.User.AdditionalGids, gid)
			}
		}
		return nil
	}
}

// ResolveUser turns a docker-style user string into ids using the
// rootfs' /etc/passwd and /etc/group (rootfs is a host path; "" means no
// files). The files are opened inside the rootfs: symlinks are resolved as
// if the rootfs were "/", so a link cannot make berth read a host file.
//
// The user part is matched by name or uid; a uid with no entry is used as
// is with gid 0, a name with no entry is an error. A group part is matched
// by name or gid and replaces the primary gid; without one the user also
// gets the groups /etc/group lists them in. AdditionalGids holds the
// primary gid first, as Docker sets it. Missing files fall back to the
// numeric forms.
func ResolveUser(rootfs, user string) (specs.User, error) {
	userArg, groupArg, hasGroup := strings.Cut(user, ":")
	if user == "" {
		userArg = "0"
	}
	if userArg == "" || (hasGroup && groupArg == "") || strings.Contains(groupArg, ":") {
		return specs.User{}, invalid("user %q is not of the form user[:group]", user)
	}
	uid, uidErr := parseID(userArg)
	if uidErr != nil && isNumeric(userArg) {
		return specs.User{}, invalid("user %q: %v", user, uidErr)
	}
	users, err := readPasswd(rootfs)
	if err != nil {
		return specs.User{}, err
	}
	u := specs.User{UID: uid}
	var name string
	i := slices.IndexFunc(users, func(e passwdEntry) bool {
		return e.name == userArg || (uidErr == nil && e.uid == uid)
	})
	switch {
	case i >= 0:
		u.UID, u.GID, name = users[i].uid, users[i].gid, users[i].name
	case uidErr != nil:
		return specs.User{}, invalid("user %q: no user %q in the image's %s", user, userArg, passwdPath)
	}
	if hasGroup {
		if u.GID, err = resolveGroup(rootfs, groupArg); err != nil {
			return specs.User{}, err
		}
		u.AdditionalGids = []uint32{u.GID}
		return u, nil
	}
	u.AdditionalGids = []uint32{u.GID}
	if name == "" {
		return u, nil
	}
	groups, err := readGroup(rootfs)
	if err != nil {
		return specs.User{}, err
	}
	for _, g := range groups {
		if slices.Contains(g.members, name) && !slices.Contains(u.AdditionalGids, g.gid) {
			u.AdditionalGids = append(u.AdditionalGids, g.gid)
		}
	}
	return u, nil
}

// resolveGroup finds a group by name or gid; a gid with no entry is used
// as is.
func resolveGroup(rootfs, group string) (uint32, error) {
	gid, gidErr := parseID(group)
	if gidErr != nil && isNumeric(group) {
		return 0, invalid("group %q: %v", group, gidErr)
	}
	groups, err := readGroup(rootfs)
	if err != nil {
		return 0, err
	}
	i := slices.IndexFunc(groups, func(e groupEntry) bool {
		return e.name == group || (gidErr == nil && e.gid == gid)
	})
	switch {
	case i >= 0:
		return groups[i].gid, nil
	case gidErr == nil:
		return gid, nil
	}
	return 0, invalid("group %q: no such group in the image's %s", group, groupPath)
}

func isNumeric(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// parseID parses a decimal uid or gid in 0..2^31-1.
func parseID(s string) (uint32, error) {
	if !isNumeric(s) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxID {
		return 0, fmt.Errorf("id %s is out of range 0..%d", s, maxID)
	}
	return uint32(n), nil
}

func readPasswd(rootfs string) ([]passwdEntry, error) {
	var out []passwdEntry
	err := scanIDFile(rootfs, passwdPath, func(f []string) {
		if len(f) < 4 {
			return
		}
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 == nil && err2 == nil {
			out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid})
		}
	})
	return out, err
}

func readGroup(rootfs string) ([]groupEntry, error) {
	var out []groupEntry
	err := scanIDFile(rootfs, groupPath, func(f []string) {
		if len(f) < 3 {
			return
		}
		gid, err := parseID(f[2])
		if err != nil {
			return
		}
		g := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			g.members = strings.Split(f[3], ",")
		}
		out = append(out, g)
	})
	return out, err
}

// scanIDFile calls fn with the colon-separated fields of each line of the
// file at name inside rootfs, skipping blank and comment lines. A missing
// file (or no rootfs) yields no lines; malformed lines are skipped, as the
// C library does.
func scanIDFile(rootfs, name string, fn func([]string)) error {
	if rootfs == "" {
		return nil
	}
	f, err := openInRoot(rootfs, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxIDFile))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s in rootfs %s: %w", name, rootfs, err)
	}
	return nil
}

// openInRoot opens the regular file at name for reading, resolving it
// inside rootfs. A missing file, or a path component that leads nowhere
// once confined to the rootfs, reports fs.ErrNotExist.
func openInRoot(rootfs, name string) (*os.File, error) {
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// Not the file missing (which falls back to numeric ids): the
		// rootfs itself is.
		return nil, fmt.Errorf("rootfs %s does not exist: %w", rootfs, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open rootfs %s: %w", rootfs, err)
	}
	defer root.Close()
	h, err := pathrs.OpenatInRoot(root, name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("%s in rootfs %s: %w", name, rootfs, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open %s in rootfs %s: %w", name, rootfs, err)
	}
	defer h.Close()
	// Reopening a FIFO or device could block or have side effects.
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat %s in rootfs %s: %w", name, rootfs, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, invalid("%s in rootfs %s is not a regular file", name, rootfs)
	}
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open %s in rootfs %s: %w", name, rootfs, err)
	}
	return f, nil
}
