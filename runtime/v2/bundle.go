package v2

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/mount"
)

// Files of a bundle, <state>/<namespace>/<id>/. The shim adds its own
// (address, shim.pid, options.json, init.pid, log.json).
const (
	// SpecFile is the OCI runtime spec.
	SpecFile = "config.json"
	// RootfsDir is where the shim mounts the container's rootfs.
	RootfsDir = "rootfs"
	// LogFifo carries the shim's own log to berthd.
	LogFifo = "log"
	// AddressFile holds the shim's ttrpc address.
	AddressFile = "address"
	// BinaryFile names the shim binary that serves the bundle, so a
	// restarted berthd can run its delete command.
	BinaryFile = "shim-binary-path"
	// RuntimeFile holds the runtime name the task was created with.
	RuntimeFile = "runtime"
)

// bundle is one task's folder.
type bundle struct {
	namespace, id, path string
}

func (m *Manager) bundlePath(ns, id string) string {
	return filepath.Join(m.opts.State, ns, id)
}

// newBundle creates the bundle of a task: the spec, the rootfs mount point
// and the shim log FIFO.
func (m *Manager) newBundle(ns, id string, spec []byte, runtime, binary string) (_ *bundle, err error) {
	if !json.Valid(spec) {
		return nil, fmt.Errorf("spec of %q is not JSON: %w", id, errdefs.ErrInvalidArgument)
	}
	b := &bundle{namespace: ns, id: id, path: m.bundlePath(ns, id)}
	if err := os.MkdirAll(filepath.Dir(b.path), 0o711); err != nil {
		return nil, fmt.Errorf("create bundle folder: %w", err)
	}
	if err := os.Mkdir(b.path, 0o711); err != nil {
		if os.IsExist(err) {
			return nil, fmt.Errorf("bundle %s exists: %w", b.path, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create bundle: %w", err)
	}
	defer func() {
		if err != nil {
			b.remove()
		}
	}()
	files := map[string][]byte{SpecFile: spec, BinaryFile: []byte(binary), RuntimeFile: []byte(runtime)}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(b.path, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("write bundle %s: %w", name, err)
		}
	}
	if err := os.Mkdir(filepath.Join(b.path, RootfsDir), 0o711); err != nil {
		return nil, fmt.Errorf("create rootfs folder: %w", err)
	}
	if err := unix.Mkfifo(filepath.Join(b.path, LogFifo), 0o600); err != nil {
		return nil, fmt.Errorf("create shim log FIFO: %w", err)
	}
	return b, nil
}

// readFile returns a bundle file's content, "" when it is missing.
func (b *bundle) readFile(name string) string {
	data, err := os.ReadFile(filepath.Join(b.path, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// remove unmounts whatever is left on the rootfs and removes the bundle.
// A rootfs that stays mounted keeps the bundle: removing files through a
// live mount would destroy the container's writable layer.
func (b *bundle) remove() error {
	rootfs := filepath.Join(b.path, RootfsDir)
	if err := mount.UnmountRecursive(rootfs, 0); err != nil {
		if err := mount.UnmountRecursive(rootfs, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("bundle %s: %w", b.path, err)
		}
	}
	if err := os.RemoveAll(b.path); err != nil {
		return fmt.Errorf("remove bundle %s: %w", b.path, err)
	}
	return nil
}
