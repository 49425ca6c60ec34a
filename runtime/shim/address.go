package shim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Files the shim writes in the bundle.
const (
	// AddressFile holds the shim's ttrpc address, "unix:///path".
	AddressFile = "address"
	// PidFile holds the long-lived shim's pid.
	PidFile = "shim.pid"
	// LogFifo is the FIFO the daemon may create for the shim's log; without
	// it the shim appends to LogFile.
	LogFifo = "log"
	// LogFile is the shim's own log when the bundle has no LogFifo.
	LogFile = "shim.log"
)

// Annotations that make containers share one shim (the first one present
// names the group), as containerd's runc shim groups pod containers.
var groupAnnotations = []string{"io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"}

// maxSocketPath is the longest path a unix socket address holds.
const maxSocketPath = 107

// SocketPath is where the shim of group (a container id, or the group
// annotation's value) serves: a file in the "s" directory beside the daemon's
// socket, named by the hex SHA-256 of "<daemon address>/<namespace>/<group>"
// (filepath.Join, with any "unix://" prefix of the address removed).
func SocketPath(daemonAddress, namespace, group string) (string, error) {
	addr := strings.TrimPrefix(daemonAddress, "unix://")
	if !filepath.IsAbs(addr) {
		return "", fmt.Errorf("daemon address %q is not an absolute socket path: %w", daemonAddress, errdefs.ErrInvalidArgument)
	}
	sum := sha256.Sum256([]byte(filepath.Join(addr, namespace, group)))
	path := filepath.Join(filepath.Dir(addr), "s", hex.EncodeToString(sum[:]))
	if len(path) > maxSocketPath {
		return "", fmt.Errorf("shim socket path %s is longer than %d bytes; use a shorter daemon address: %w", path, maxSocketPath, errdefs.ErrInvalidArgument)
	}
	return path, nil
}

// DefaultRuntimeRoot is the runtime state root used when the runtime
// options name none: "runc" beside the daemon's socket. The namespace is
// appended to it.
func DefaultRuntimeRoot(daemonAddress string) string {
	return filepath.Join(filepath.Dir(strings.TrimPrefix(daemonAddress, "unix://")), "runc")
}

// groupOf returns the shim group of the container whose bundle is dir.
func groupOf(dir, id string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return "", fmt.Errorf("read bundle config: %w", err)
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return "", fmt.Errorf("decode bundle config: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	for _, a := range groupAnnotations {
		if g := spec.Annotations[a]; g != "" {
			return g, nil
		}
	}
	return id, nil
}

// writeFileAtomic replaces path with data, so readers never see a partial
// file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// canConnect reports whether something serves the socket.
func canConnect(path string) bool {
	conn, err := net.DialTimeout("unix", path, 100*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// readAddress returns the socket path in the bundle's address file.
func readAddress(bundle string) (string, error) {
	data, err := os.ReadFile(filepath.Join(bundle, AddressFile))
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(strings.TrimSpace(string(data)), "unix://"), nil
}
