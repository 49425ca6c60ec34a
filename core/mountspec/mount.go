// Package mountspec parses docker's mount flags (-v, --mount, --tmpfs,
// --volumes-from, image VOLUMEs) into Mounts, turns them into runtime-spec
// mounts, and resolves mount paths safely: destinations inside the
// container's root (ResolveDestination), bind sources on the host
// (ResolveBindSource).
//
// How the runtime uses it, per container:
//
//  1. At create: parse the flags (ParseVolume, ParseMount, ParseTmpfs),
//     add InheritMounts of every --volumes-from container and
//     ImageVolumes of the image, and Combine them. For each volume mount
//     call volumes.Store.Acquire with volumes.Spec{Name: Source, Driver,
//     Options: DriverOptions, Labels} (it creates named volumes on first
//     use and an anonymous one for an empty Source) and store the volume's
//     name in Source; check every bind with ResolveBindSource and store
//     BindSource.Path in Source, so the container keeps the path that was
//     checked, not one a later symlink could redirect.
//  2. At start, with the rootfs mounted: for each volume mount call
//     volumes.Store.Mount for its host path and, unless NoCopy,
//     volumes.CopyUp. Resolve every destination with ResolveDestination
//     (ResolveFileDestination for a bind of a file) and build the runtime-spec mount with SpecMount(source, resolved).
//     runc resolves destinations inside the rootfs by itself, but an image
//     symlink such as /data -> /etc would then be followed at mount time;
//     passing the already-resolved destination (whose mount point berth
//     has created inside the rootfs) means runc mounts exactly where berth
//     checked. For binds, the race-free way is OpenBindSource(Source) and
//     BindInto, which mounts the pinned source into the rootfs before
//     `runc create` and needs no spec entry; the simpler one re-checks
//     with OpenBindSource, closes it and passes Source to runc in a spec
//     mount (see ResolveBindSource for the window that leaves).
//  3. When the task exits: volumes.Store.Unmount for each volume; when the
//     container is removed: volumes.Store.ReleaseAll.
package mountspec

import (
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthd/berth/core/oci"
)

// Type is the kind of a mount.
type Type string

// Mount types, as docker names them.
const (
	TypeVolume Type = "volume"
	TypeBind   Type = "bind"
	TypeTmpfs  Type = "tmpfs"
)

// Mount is one parsed mount of a container. The JSON form is meant for the
// runtime to keep in its container records.
type Mount struct {
	Type Type `json:"type"`
	// Source is the volume's name (empty for a new anonymous volume until
	// the runtime fills it in) or the host path of a bind; empty for
	// tmpfs.
	Source string `json:"source,omitempty"`
	// Destination is the absolute, cleaned path in the container.
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readonly,omitempty"`

	// Propagation of a bind: rprivate (the default when empty), private,
	// rshared, shared, rslave or slave.
	Propagation string `json:"propagation,omitempty"`
	// Relabel is the SELinux relabelling asked for with z or Z. It is kept
	// for inspection; berth does not relabel.
	Relabel string `json:"relabel,omitempty"`

	// Anonymous marks a volume created for this container, removed with it.
	Anonymous bool `json:"anonymous,omitempty"`
	// NoCopy skips filling a new volume with the image's content.
	NoCopy        bool              `json:"nocopy,omitempty"`
	Driver        string            `json:"driver,omitempty"`
	DriverOptions map[string]string `json:"driver_options,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`

	// TmpfsOptions are the options of a tmpfs mount (size in bytes, mode,
	// flags such as noexec), validated; ro and rw are in ReadOnly.
	TmpfsOptions []string `json:"tmpfs_options,omitempty"`
}

// defaultTmpfsOptions are Docker's flags for tmpfs mounts; the user's
// options come after and win (exec clears noexec).
var defaultTmpfsOptions = []string{"noexec", "nosuid", "nodev"}

// SpecMount returns the runtime-spec mount for m, with source the host
// path to bind (the volume's data from volumes.Store.Mount, or the checked
// bind source; ignored for tmpfs) and destination the path inside the
// container, best the result of ResolveDestination.
func (m Mount) SpecMount(source, destination string) specs.Mount {
	if m.Type == TypeTmpfs {
		opts := mergeTmpfsOptions(append(slices.Clone(defaultTmpfsOptions), m.TmpfsOptions...))
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		return specs.Mount{Destination: destination, Type: "tmpfs", Source: "tmpfs", Options: opts}
	}
	sm := oci.BindMount(source, destination, m.ReadOnly)
	if m.Propagation != "" {
		sm.Options = slices.DeleteFunc(sm.Options, func(o string) bool { return o == "rprivate" })
		sm.Options = append(sm.Options, m.Propagation)
	}
	return sm
}

// flagOpposites pairs each tmpfs flag with the one that undoes it.
var flagOpposites = map[string]string{
	"noexec": "exec", "exec": "noexec",
	"nosuid": "suid", "suid": "nosuid",
	"nodev": "dev", "dev": "nodev",
	"noatime": "atime", "atime": "noatime",
	"nodiratime": "diratime", "diratime": "nodiratime",
	"sync": "async", "async": "sync",
}

// mergeTmpfsOptions keeps the last of every option: a later flag replaces
// its opposite, a later key=value its earlier value.
func mergeTmpfsOptions(opts []string) []string {
	var out []string
	for _, o := range opts {
		key, _, hasValue := strings.Cut(o, "=")
		out = slices.DeleteFunc(out, func(p string) bool {
			if hasValue {
				k, _, ok := strings.Cut(p, "=")
				return ok && k == key
			}
			return p == o || p == flagOpposites[o]
		})
		out = append(out, o)
	}
	return out
}
