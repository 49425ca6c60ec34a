package archive

import (
	"errors"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
)

// badArchive is the error for anything wrong with the archive itself: the
// caller sent bad input, whatever part of it is at fault.
func badArchive(format string, args ...any) error {
	return fmt.Errorf("invalid archive: %s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// readError describes a failure to read the archive stream.
func readError(what string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badArchive("%s: archive is truncated", what)
	}
	return badArchive("%s: %v", what, err)
}

// contentError turns what the image helpers report about the archive's
// content (a blob missing, malformed or of the wrong size) into an archive
// error, and leaves other failures (the store, a cancelled context) as
// they are.
func contentError(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	switch {
	case errdefs.IsNotFound(err):
		return badArchive("%s: archive lacks it (%v)", what, err)
	case errdefs.IsInvalidArgument(err), errdefs.IsFailedPrecondition(err):
		return badArchive("%s: %v", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
