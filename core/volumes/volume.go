// Package volumes keeps berth's volumes: named or anonymous directories
// that outlive the containers using them, like Docker's. The Store holds
// one record per volume in the metadata database (bucket
// v1/<namespace>/volumes) and leaves the data to a Driver, the plugin type
// io.berth.volume.v1 ("local" is built in).
//
// The runtime uses a volume in four steps:
//
//	v, _ := store.Acquire(ctx, containerID, volumes.Spec{Name: name}) // create on first use, record the user
//	dir, _ := store.Mount(ctx, v.Name, containerID)                    // before start: the host path to bind
//	store.Unmount(ctx, v.Name, containerID)                            // after the task exits
//	store.ReleaseAll(ctx, containerID, removeAnonymous)                // when the container is removed
//
// and calls SetRunningFunc once so that forced removal can refuse volumes
// of running containers.
package volumes

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/containerd/errdefs"
)

// DefaultDriver is the driver of volumes created without one.
const DefaultDriver = "local"

// Volume is one volume.
type Volume struct {
	Namespace string
	Name      string
	Driver    string
	Labels    map[string]string
	// Options are the driver's options as given at creation.
	Options   map[string]string
	CreatedAt time.Time
	// Mountpoint is the host directory holding the data.
	Mountpoint string
	// Anonymous volumes were created for one container (docker run -v
	// /path, image VOLUME) and are removed with it.
	Anonymous bool
	// Users are the ids of the containers that use the volume, sorted.
	Users []string
	// Mounted are the users that have it mounted now (running), sorted.
	Mounted []string
}

// Spec describes a volume to create.
type Spec struct {
	// Name is the volume's name; empty means a random 64-hex name.
	Name string
	// Driver defaults to DefaultDriver.
	Driver  string
	Labels  map[string]string
	Options map[string]string
	// Anonymous marks a volume made for one container.
	Anonymous bool
}

// maxNameLength keeps a name usable as one path component.
const maxNameLength = 255

// ValidateName checks a volume name against Docker's rule: two or more of
// [a-zA-Z0-9_.-], the first a letter or digit. The rule keeps names safe
// as a directory name: no "/", no "." or "..", no NUL.
func ValidateName(name string) error {
	reason := ""
	switch {
	case name == "":
		reason = "it is empty"
	case len(name) > maxNameLength:
		return fmt.Errorf("volume name %q is invalid: it is %d bytes, more than %d: %w", name[:32]+"...", len(name), maxNameLength, errdefs.ErrInvalidArgument)
	case strings.IndexByte(name, 0) >= 0:
		reason = "it contains a NUL byte"
	case strings.Contains(name, "/"):
		reason = "it contains '/' (a host directory to bind must be an absolute path)"
	case !isAlnum(name[0]):
		first, _ := utf8.DecodeRuneInString(name)
		reason = fmt.Sprintf("it starts with %q instead of a letter or digit", first)
	case len(name) < 2:
		reason = "it is shorter than two characters"
	default:
		for _, r := range name {
			if r >= 0x80 || !isAlnum(byte(r)) && r != '_' && r != '.' && r != '-' {
				reason = fmt.Sprintf("it contains %q; only [a-zA-Z0-9_.-] are allowed", r)
				break
			}
		}
	}
	if reason != "" {
		return fmt.Errorf("volume name %q is invalid: %s: %w", name, reason, errdefs.ErrInvalidArgument)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// NewName returns a random 64-hex volume name, as Docker gives anonymous
// volumes.
func NewName() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
