package task

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/runtime/shim/reaper"
	"github.com/berthd/berth/runtime/shim/runc"
)

// Files the shim keeps in a bundle, besides config.json and rootfs/.
const (
	// OptionsFile holds the runtime options of Create as JSON, so the
	// delete command can find the runtime and its root after the shim died.
	OptionsFile = "options.json"
	// InitPidFile is where the runtime writes the container's init pid.
	InitPidFile = "init.pid"
	// RootfsDir is where the request's rootfs mounts are mounted.
	RootfsDir = "rootfs"
)

// optionsTypeURL is the type of the runtime options containerd clients send
// (containerd.runc.v1.Options).
var optionsTypeURL = string((&options.Options{}).ProtoReflect().Descriptor().FullName())

// DecodeOptions reads the runtime options of a Create request; no options
// give the defaults.
func DecodeOptions(a *anypb.Any) (*options.Options, error) {
	opts := &options.Options{}
	if a == nil || (a.GetTypeUrl() == "" && len(a.GetValue()) == 0) {
		return opts, nil
	}
	if name := strings.TrimPrefix(a.GetTypeUrl(), "type.googleapis.com/"); name != optionsTypeURL {
		return nil, fmt.Errorf("runtime options of type %q (want %s): %w", a.GetTypeUrl(), optionsTypeURL, errdefs.ErrInvalidArgument)
	}
	if err := proto.Unmarshal(a.GetValue(), opts); err != nil {
		return nil, fmt.Errorf("decode runtime options: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return opts, nil
}

// savedOptions is what the bundle keeps of the runtime options: what the
// delete command needs to find the container. The JSON names are those of
// containerd's options.json.
type savedOptions struct {
	BinaryName    string `json:"binary_name,omitempty"`
	Root          string `json:"root,omitempty"`
	SystemdCgroup bool   `json:"systemd_cgroup,omitempty"`
}

// WriteOptions saves opts in the bundle.
func WriteOptions(bundle string, opts *options.Options) error {
	data, err := json.Marshal(savedOptions{BinaryName: opts.BinaryName, Root: opts.Root, SystemdCgroup: opts.SystemdCgroup})
	if err != nil {
		return fmt.Errorf("encode runtime options: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, OptionsFile), data, 0o600); err != nil {
		return fmt.Errorf("save runtime options: %w", err)
	}
	return nil
}

// ReadOptions loads the options saved in the bundle; a bundle without them
// (the shim died before Create) gives the defaults.
func ReadOptions(bundle string) (*options.Options, error) {
	data, err := os.ReadFile(filepath.Join(bundle, OptionsFile))
	if os.IsNotExist(err) {
		return &options.Options{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read runtime options: %w", err)
	}
	var saved savedOptions
	if err := json.Unmarshal(data, &saved); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(bundle, OptionsFile), err)
	}
	return &options.Options{BinaryName: saved.BinaryName, Root: saved.Root, SystemdCgroup: saved.SystemdCgroup}, nil
}

// NewRuntime returns the OCI runtime opts select for a container of
// namespace whose bundle is bundle. Its state lives under
// <opts.Root or defaultRoot>/<namespace>, as containerd's shim keeps it.
func NewRuntime(opts *options.Options, defaultRoot, namespace, bundle string, r *reaper.Reaper) *runc.Runtime {
	root := opts.GetRoot()
	if root == "" {
		root = defaultRoot
	}
	return &runc.Runtime{
		Binary:        opts.GetBinaryName(),
		Root:          filepath.Join(root, namespace),
		WorkDir:       bundle,
		SystemdCgroup: opts.GetSystemdCgroup(),
		Reaper:        r,
	}
}

// bundleSpec is the part of the bundle's config.json the shim reads; a
// small type keeps encoding/json's per-type caches small.
type bundleSpec struct {
	Hooks *struct {
		Poststop []json.RawMessage `json:"poststop"`
	} `json:"hooks"`
	Linux *struct {
		Namespaces []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"namespaces"`
	} `json:"linux"`
}

// readSpec reads the parts of the bundle's config.json the shim needs.
func readSpec(bundle string) (*bundleSpec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read bundle config: %w", err)
	}
	var s bundleSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode %s: %v: %w", filepath.Join(bundle, "config.json"), err, errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

// privatePidNamespace reports whether the container gets a pid namespace of
// its own; then the kernel kills every process in it when init dies.
func privatePidNamespace(s *bundleSpec) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == "pid" && ns.Path == "" {
			return true
		}
	}
	return false
}

// hasPoststopHooks reports whether the runtime's delete runs hooks of the
// user's: then the delete must finish before the task is reported deleted.
func hasPoststopHooks(s *bundleSpec) bool {
	return s.Hooks != nil && len(s.Hooks.Poststop) > 0
}

// validExecID rejects exec ids that cannot name a pid file in the bundle.
func validExecID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || len(id) > 255 {
		return fmt.Errorf("exec id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}
