package mountspec

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// ImageVolumes returns an anonymous volume mount for every VOLUME of an
// image config (ocispec.ImageConfig.Volumes), sorted by destination. A
// relative entry counts from "/", as in a Dockerfile; an entry that cleans
// to "/" is refused, since nothing can be mounted over the root.
func ImageVolumes(vols map[string]struct{}) ([]Mount, error) {
	var out []Mount
	for v := range vols {
		dst, err := cleanDestination(path.Join("/", v))
		if err != nil {
			return nil, fmt.Errorf("image volume %q: %w", v, err)
		}
		out = append(out, Mount{Type: TypeVolume, Destination: dst, Anonymous: true})
	}
	slices.SortFunc(out, func(a, b Mount) int { return strings.Compare(a.Destination, b.Destination) })
	// "/data" and "/data/" are one volume.
	return slices.CompactFunc(out, func(a, b Mount) bool { return a.Destination == b.Destination }), nil
}

// ParseVolumesFrom parses a docker --volumes-from value, CONTAINER[:ro|rw],
// into the container's name or id and the access mode to force ("" keeps
// each mount's own).
func ParseVolumesFrom(spec string) (container, mode string, err error) {
	container, mode, _ = strings.Cut(spec, ":")
	if container == "" {
		return "", "", invalid("volumes-from %q: the container is empty", spec)
	}
	switch mode {
	case "", "ro", "rw":
		return container, mode, nil
	}
	return "", "", invalid("volumes-from %q: mode %q is not ro or rw", spec, mode)
}

// InheritMounts returns the mounts a --volumes-from container passes on:
// its volumes (by the names they got, so both containers share them) and
// binds, not its tmpfs mounts. mode "ro" or "rw" forces the access mode;
// "" keeps each mount's. Inherited volumes are not the new container's
// anonymous volumes, so they are not removed with it.
func InheritMounts(from []Mount, mode string) []Mount {
	var out []Mount
	for _, m := range from {
		if m.Type == TypeTmpfs {
			continue
		}
		m.Anonymous = false
		m.DriverOptions = maps.Clone(m.DriverOptions)
		m.Labels = maps.Clone(m.Labels)
		switch mode {
		case "ro":
			m.ReadOnly = true
		case "rw":
			m.ReadOnly = false
		}
		out = append(out, m)
	}
	return out
}

// Combine assembles a container's mounts as docker does: the user's own
// mounts (-v, --mount, --tmpfs) first, two of them at one destination
// being an error; then inherited mounts (--volumes-from) and the image's
// volumes, each only where no earlier mount has its destination.
func Combine(user, inherited, image []Mount) ([]Mount, error) {
	taken := map[string]bool{}
	var out []Mount
	for _, m := range user {
		if taken[m.Destination] {
			return nil, fmt.Errorf("duplicate mount point %s: %w", m.Destination, errdefs.ErrInvalidArgument)
		}
		taken[m.Destination] = true
		out = append(out, m)
	}
	for _, group := range [][]Mount{inherited, image} {
		for _, m := range group {
			if !taken[m.Destination] {
				taken[m.Destination] = true
				out = append(out, m)
			}
		}
	}
	return out, nil
}
