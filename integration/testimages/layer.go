package testimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Epoch is the modification time of every entry, config and history record
// that does not set its own: a fixed instant keeps digests stable.
var Epoch = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// Whiteout prefixes of the OCI layer format.
const (
	WhiteoutPrefix = ".wh."
	OpaqueMarker   = ".wh..wh..opq"
)

// Entry is one member of a layer tarball. Header is exported so tests can
// adjust anything the constructors do not cover (xattrs, PAX records, times).
type Entry struct {
	Header tar.Header
	Data   []byte
}

// File is a regular file. mode holds permission bits in tar form (0o4755 for
// setuid, 0o1777 for sticky).
func File(name string, data []byte, mode int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, Data: data}
}

// Dir is a directory.
func Dir(name string, mode int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

// Symlink is a symbolic link; target is stored verbatim.
func Symlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// Hardlink is a hard link to target, another path of the same layer.
func Hardlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// CharDev is a character device node.
func CharDev(name string, major, minor, mode int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeChar, Name: name, Devmajor: major, Devminor: minor, Mode: mode}}
}

// Whiteout deletes name (a file or a whole directory) of the layers below.
func Whiteout(name string) Entry {
	dir, base := path.Split(strings.TrimSuffix(name, "/"))
	return File(dir+WhiteoutPrefix+base, nil, 0o644)
}

// Opaque hides everything the layers below have under dir; entries of the
// same layer under dir stay.
func Opaque(dir string) Entry {
	return File(path.Join(dir, OpaqueMarker), nil, 0o644)
}

// Raw is an entry written exactly as given, for crafting hostile layers with
// [RawLayer]. Size is taken from data when the header leaves it zero.
func Raw(hdr tar.Header, data []byte) Entry {
	if hdr.Size == 0 {
		hdr.Size = int64(len(data))
	}
	return Entry{Header: hdr, Data: data}
}

// Owner returns e owned by uid:gid.
func (e Entry) Owner(uid, gid int) Entry {
	e.Header.Uid, e.Header.Gid = uid, gid
	return e
}

// Layer is an uncompressed layer tarball. Callers must not modify Tar.
type Layer struct {
	Tar    []byte
	DiffID digest.Digest // digest of Tar
}

// NewLayer builds a well-formed layer: names are cleaned and made relative
// ("/etc/x" and "etc/x" are the same), directories get a trailing slash,
// missing parent directories are added (mode 0755, root), entries are sorted
// by name and zero mtimes become [Epoch]. Of hard-linked names the first in
// that order holds the data and the others link to it. Duplicate names are
// an error.
func NewLayer(entries ...Entry) (Layer, error) {
	byName := make(map[string]Entry, len(entries))
	for _, e := range entries {
		name := cleanName(e.Header.Name)
		if name == "" {
			return Layer{}, fmt.Errorf("layer entry %q names the root: %w", e.Header.Name, errdefs.ErrInvalidArgument)
		}
		if _, dup := byName[name]; dup {
			return Layer{}, fmt.Errorf("layer entry %q appears twice: %w", name, errdefs.ErrInvalidArgument)
		}
		if e.Header.Typeflag == tar.TypeLink {
			e.Header.Linkname = cleanName(e.Header.Linkname)
		}
		byName[name] = e
	}
	for name := range byName {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if _, ok := byName[dir]; !ok {
				byName[dir] = Dir(dir, 0o755)
			}
		}
	}
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	sort.Strings(names)
	sorted := make([]Entry, len(names))
	for i, name := range names {
		e := byName[name]
		e.Header.Name = name
		if e.Header.Typeflag == tar.TypeDir {
			e.Header.Name += "/"
		}
		sorted[i] = e
	}
	linksAfterTargets(sorted)
	return RawLayer(sorted...)
}

// linksAfterTargets makes the first name of each hard-linked file (in tar
// order) hold its data, as a tar reader needs a link's target before the
// link; the other names become links to it, as Docker writes them.
func linksAfterTargets(entries []Entry) {
	pos := make(map[string]int, len(entries))
	for i, e := range entries {
		pos[strings.TrimSuffix(e.Header.Name, "/")] = i
	}
	holder := map[string]string{} // original target -> name now holding the data
	for i, e := range entries {
		if e.Header.Typeflag != tar.TypeLink {
			continue
		}
		target := e.Header.Linkname
		if h, ok := holder[target]; ok {
			entries[i].Header.Linkname = h
			continue
		}
		j, ok := pos[target]
		if !ok || j < i || entries[j].Header.Typeflag != tar.TypeReg {
			continue // a link to a lower layer's file, or already in order
		}
		data := entries[j]
		data.Header.Name = e.Header.Name
		entries[i] = data
		entries[j].Header = tar.Header{Typeflag: tar.TypeLink, Name: target, Linkname: e.Header.Name,
			Mode: data.Header.Mode, Uid: data.Header.Uid, Gid: data.Header.Gid, ModTime: data.Header.ModTime}
		entries[j].Data = nil
		holder[target] = e.Header.Name
	}
}

// RawLayer writes entries in the given order with their names untouched, so
// tests can build layers with "../" or absolute names, links out of the root
// and duplicates. Only a zero mtime is replaced by [Epoch].
func RawLayer(entries ...Entry) (Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.Header
		if hdr.ModTime.IsZero() {
			hdr.ModTime = Epoch
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return Layer{}, fmt.Errorf("write tar header %q: %w", hdr.Name, err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			return Layer{}, fmt.Errorf("write tar data %q: %w", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Layer{}, fmt.Errorf("close layer tar: %w", err)
	}
	return Layer{Tar: buf.Bytes(), DiffID: digest.FromBytes(buf.Bytes())}, nil
}

func cleanName(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	return name
}
