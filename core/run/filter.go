package run

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/reference"
)

// Filter selects containers.
type Filter func(Record) bool

// ParseFilters reads docker-style "key=value" filters: status, name (part
// of the name), id (id prefix), label (key or key=value), ancestor (image
// reference or image id prefix) and exited (exit code). Values of one key
// are alternatives; all keys must match.
func ParseFilters(fs []string) (Filter, error) {
	byKey := map[string][]string{}
	for _, f := range fs {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("filter %q is not key=value: %w", f, errdefs.ErrInvalidArgument)
		}
		switch k {
		case "status":
			switch v {
			case StatusCreated, StatusRunning, StatusPaused, StatusRestarting, StatusRemoving, StatusExited, StatusDead:
			default:
				return nil, fmt.Errorf("filter status=%s: use created, running, paused, restarting, removing, exited or dead: %w", v, errdefs.ErrInvalidArgument)
			}
		case "exited":
			if _, err := strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("filter exited=%s: want an exit code: %w", v, errdefs.ErrInvalidArgument)
			}
		case "ancestor":
			// Kept both as given (an image id prefix) and normalized.
			norm := v
			if ref, err := reference.ParseNormalized(v); err == nil {
				norm = ref.String()
			}
			v = v + "\x00" + norm
		case "name", "id", "label":
		default:
			return nil, fmt.Errorf("filter key %q: use status, name, id, label, ancestor or exited: %w", k, errdefs.ErrInvalidArgument)
		}
		byKey[k] = append(byKey[k], v)
	}
	return func(r Record) bool {
		for k, vs := range byKey {
			if !anyMatch(r, k, vs) {
				return false
			}
		}
		return true
	}, nil
}

func anyMatch(r Record, k string, vs []string) bool {
	for _, v := range vs {
		if match(r, k, v) {
			return true
		}
	}
	return false
}

func match(r Record, k, v string) bool {
	switch k {
	case "status":
		return r.State.Status == v
	case "exited":
		code, _ := strconv.Atoi(v)
		return r.State.Status == StatusExited && r.State.ExitCode == code
	case "name":
		return strings.Contains(r.Config.Name, v)
	case "id":
		return strings.HasPrefix(r.ID, v)
	case "label":
		lk, lv, hasValue := strings.Cut(v, "=")
		got, ok := r.Labels[lk]
		return ok && (!hasValue || got == lv)
	case "ancestor":
		raw, norm, _ := strings.Cut(v, "\x00")
		id := strings.TrimPrefix(r.Config.ImageID, "sha256:")
		return r.Image == norm || r.Config.ImageID == raw ||
			len(raw) >= 4 && strings.HasPrefix(id, strings.TrimPrefix(raw, "sha256:"))
	}
	return false
}
