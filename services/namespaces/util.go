package namespaces

import (
	"strings"

	"github.com/containerd/errdefs"
)

var errInvalid = errdefs.ErrInvalidArgument

func joinPath(p []string) string { return strings.Join(p, ".") }
