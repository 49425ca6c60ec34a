// Package labels validates the key/value labels every berth object carries.
package labels

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// MaxSize is the most bytes one label (key plus value) may hold, as in
// containerd, so label-heavy clients behave the same against both.
const MaxSize = 4096

// Validate checks one label.
func Validate(k, v string) error {
	if k == "" {
		return fmt.Errorf("label key must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(k)+len(v) > MaxSize {
		short := k
		if len(short) > 10 {
			short = short[:10] + "..."
		}
		return fmt.Errorf("label %q: key and value are %d bytes, more than the limit of %d: %w", short, len(k)+len(v), MaxSize, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ValidateAll checks every label of a set.
func ValidateAll(labels map[string]string) error {
	for k, v := range labels {
		if err := Validate(k, v); err != nil {
			return err
		}
	}
	return nil
}
