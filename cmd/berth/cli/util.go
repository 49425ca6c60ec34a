package cli

import (
	"errors"

	"fmt"
	"github.com/containerd/errdefs"
	"sort"
	"strings"
)

func sortStrings(s []string) { sort.Strings(s) }

// usageError is a command-line mistake: docker's exit code 125.
func usageError(format string, args ...any) error {
	return &ExitError{Code: 125, Err: fmt.Errorf(format, args...)}
}

// dirOf is the folder of path, for temporary files beside it.
func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return "."
}

func isAlreadyExists(err error) bool { return errors.Is(err, errdefs.ErrAlreadyExists) }
