package volumes

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// Filter selects volumes with docker's volume filters. Values of one key
// are alternatives; different keys must all match.
type Filter struct {
	dangling []bool
	names    []string
	drivers  []string
	labels   []labelFilter
}

type labelFilter struct {
	key, value string
	hasValue   bool
}

// ParseFilters parses docker-style "key=value" filters: dangling=true|false
// (unused or used), name=<part of the name>, driver=<driver>, label=<key>
// or label=<key>=<value>.
func ParseFilters(args []string) (Filter, error) {
	var f Filter
	for _, a := range args {
		key, value, ok := strings.Cut(a, "=")
		if !ok || key == "" {
			return Filter{}, fmt.Errorf("filter %q is not key=value: %w", a, errdefs.ErrInvalidArgument)
		}
		switch key {
		case "dangling":
			switch strings.ToLower(value) {
			case "true", "1":
				f.dangling = append(f.dangling, true)
			case "false", "0":
				f.dangling = append(f.dangling, false)
			default:
				return Filter{}, fmt.Errorf("filter %q: dangling takes true or false: %w", a, errdefs.ErrInvalidArgument)
			}
		case "name":
			f.names = append(f.names, value)
		case "driver":
			f.drivers = append(f.drivers, value)
		case "label":
			k, v, has := strings.Cut(value, "=")
			if k == "" {
				return Filter{}, fmt.Errorf("filter %q: label needs a key: %w", a, errdefs.ErrInvalidArgument)
			}
			f.labels = append(f.labels, labelFilter{k, v, has})
		default:
			return Filter{}, fmt.Errorf("filter %q: unknown key %q (dangling, driver, label, name): %w", a, key, errdefs.ErrInvalidArgument)
		}
	}
	return f, nil
}

// Match reports whether v passes the filter.
func (f Filter) Match(v Volume) bool {
	return anyOf(f.dangling, func(d bool) bool { return d == (len(v.Users) == 0) }) &&
		anyOf(f.names, func(n string) bool { return strings.Contains(v.Name, n) }) &&
		anyOf(f.drivers, func(d string) bool { return d == v.Driver }) &&
		allOf(f.labels, func(l labelFilter) bool {
			got, ok := v.Labels[l.key]
			return ok && (!l.hasValue || got == l.value)
		})
}

// anyOf is true when no value was given or one matches.
func anyOf[T any](values []T, match func(T) bool) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		if match(v) {
			return true
		}
	}
	return false
}

// allOf is true when every value matches: docker requires every label
// filter to hold.
func allOf[T any](values []T, match func(T) bool) bool {
	for _, v := range values {
		if !match(v) {
			return false
		}
	}
	return true
}
