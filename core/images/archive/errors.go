package archive

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// badArchive is the error for anything wrong with the archive itself: the
// caller sent bad input, whatever part of it is at fault. Errors among
// args are printed without their class, which this error replaces.
func badArchive(format string, args ...any) error {
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = causeText(err)
		}
	}
	return fmt.Errorf("invalid archive: %s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// causeText is an error's text without the trailing errdefs class names
// its wrapping added, so they are not repeated.
func causeText(err error) string {
	s := err.Error()
	for trimmed := true; trimmed; {
		trimmed = false
		for _, class := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrFailedPrecondition} {
			if t, ok := strings.CutSuffix(s, ": "+class.Error()); ok {
				s, trimmed = t, true
			}
		}
	}
	return s
}

// readError describes a failure to read the archive stream.
func readError(what string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badArchive("%s: archive is truncated", what)
	}
	return badArchive("%s: %v", what, err)
}

// contentError turns what the image helpers report about a blob of the
// archive (missing, malformed, of the wrong size) into an archive error,
// and leaves other failures (the store, a cancelled context) as they are.
func contentError(err error, kind string, desc ocispec.Descriptor) error {
	switch {
	case errdefs.IsNotFound(err):
		return badArchive("%s %s is not in the archive", kind, desc.Digest)
	case errdefs.IsInvalidArgument(err), errdefs.IsFailedPrecondition(err):
		return badArchive("%v", err)
	}
	return fmt.Errorf("%s %s: %w", kind, desc.Digest, err)
}

// rootError is contentError for a failure somewhere below an image's root.
func rootError(err error, image string) error {
	switch {
	case errdefs.IsNotFound(err):
		return badArchive("image %s: content it needs is not in the archive (%v)", image, err)
	case errdefs.IsInvalidArgument(err), errdefs.IsFailedPrecondition(err):
		return badArchive("image %s: %v", image, err)
	}
	return fmt.Errorf("image %s: %w", image, err)
}
