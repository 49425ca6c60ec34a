// Package identifiers validates the names clients give to objects: namespaces,
// containers, leases, snapshots keys. The rule is containerd's, so names valid
// there are valid here: alphanumerics separated by single '.', '_' or '-',
// at most 76 characters.
package identifiers

import (
	"fmt"
	"regexp"

	"github.com/containerd/errdefs"
)

const maxLength = 76

var identifierRe = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// Validate returns errdefs.ErrInvalidArgument when s is not a valid
// identifier, saying what is wrong with it.
func Validate(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("identifier must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(s) > maxLength:
		return fmt.Errorf("identifier %q is %d characters, more than the limit of %d: %w", s, len(s), maxLength, errdefs.ErrInvalidArgument)
	case !identifierRe.MatchString(s):
		return fmt.Errorf("identifier %q must be letters and digits separated by single '.', '_' or '-': %w", s, errdefs.ErrInvalidArgument)
	}
	return nil
}
