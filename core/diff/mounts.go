package diff

import (
	"slices"
	"strings"

	"github.com/berthd/berth/core/archive"
	"github.com/berthd/berth/core/mount"
)

// overlaySpec is a parsed overlay mount: its upper directory ("" for a
// read-only overlay) and lower directories, nearest first.
type overlaySpec struct {
	upper string
	lower []string
}

// parseOverlay reads a single overlay mount. ok is false for anything else,
// including overlays with options it cannot vouch for (a mount subpath,
// data-only lower layers).
func parseOverlay(mounts []mount.Mount) (spec overlaySpec, ok bool) {
	if len(mounts) != 1 || mounts[0].Target != "" {
		return overlaySpec{}, false
	}
	upper, lower, ok := mount.OverlayDirs(mounts[0])
	return overlaySpec{upper: upper, lower: lower}, ok
}

// bindSource returns the directory of a single bind mount, which can be used
// in place of mounting it.
func bindSource(mounts []mount.Mount) (string, bool) {
	if len(mounts) != 1 || mounts[0].Type != "bind" || mounts[0].Target != "" || mounts[0].Source == "" {
		return "", false
	}
	return mounts[0].Source, true
}

// applyTarget picks where a layer can be applied without mounting anything:
// the upper directory of a writable overlay, in overlay whiteout mode (the
// layers below stay untouched and the whiteouts hide their entries), or the
// directory of a writable bind mount, which holds the merged tree, in
// remove mode.
func applyTarget(mounts []mount.Mount) (dir string, mode archive.WhiteoutMode, ok bool) {
	if spec, ok := parseOverlay(mounts); ok && spec.upper != "" {
		return spec.upper, archive.WhiteoutOverlay, true
	}
	if src, ok := bindSource(mounts); ok && !mounts[0].ReadOnly() {
		return src, archive.WhiteoutRemove, true
	}
	return "", archive.WhiteoutRemove, false
}

// overlayUpper returns the upper directory of upper when upper is a
// writable overlay stacked on exactly the layers lower shows: then the
// upper directory alone is the diff. lower may be the read-only overlay of
// the same lower directories, or the bind mount of the single one.
func overlayUpper(lower, upper []mount.Mount) (string, bool) {
	u, ok := parseOverlay(upper)
	if !ok || u.upper == "" {
		return "", false
	}
	if l, ok := parseOverlay(lower); ok {
		return u.upper, l.upper == "" && slices.Equal(l.lower, u.lower)
	}
	if src, ok := bindSource(lower); ok {
		return u.upper, len(u.lower) == 1 && src == u.lower[0]
	}
	return "", false
}

// readOnly returns mounts made read-only for reading a diff: an overlay
// loses its upper and work directories, the upper becoming the top lower
// layer (a second writable mount of one upper directory is not allowed);
// other mounts get "ro".
func readOnly(mounts []mount.Mount) []mount.Mount {
	out := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		out[i] = m
		if m.Type == "overlay" {
			out[i].Options = readOnlyOverlay(m.Options)
			continue
		}
		opts := make([]string, 0, len(m.Options)+1)
		for _, o := range m.Options {
			if o != "rw" && o != "ro" {
				opts = append(opts, o)
			}
		}
		out[i].Options = append(opts, "ro")
	}
	return out
}

func readOnlyOverlay(options []string) []string {
	out := make([]string, 0, len(options)+1)
	upper := ""
	for _, o := range options {
		switch {
		case strings.HasPrefix(o, "upperdir="):
			upper = strings.TrimPrefix(o, "upperdir=")
		case strings.HasPrefix(o, "workdir="), o == "rw", o == "ro", o == "volatile":
		default:
			out = append(out, o)
		}
	}
	if upper != "" {
		for i, o := range out {
			if strings.HasPrefix(o, "lowerdir=") {
				out[i] = "lowerdir=" + upper + ":" + strings.TrimPrefix(o, "lowerdir=")
			}
		}
	}
	return append(out, "ro")
}
