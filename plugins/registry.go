// Package plugins is berth's plugin registry. Every capability of berthd —
// metadata, content, snapshotters, runtimes, gRPC services — is a plugin
// registered in an init function and initialised by the daemon in dependency
// order. Type strings follow containerd's where a plugin plays the part of one
// of containerd's, so clients that look plugins up through introspection find
// them.
package plugins

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Type names a kind of plugin.
type Type string

// Plugin types. The io.containerd ones carry containerd's names on purpose.
const (
	ContentPlugin       Type = "io.containerd.content.v1"
	SnapshotPlugin      Type = "io.containerd.snapshotter.v1"
	MetadataPlugin      Type = "io.containerd.metadata.v1"
	DiffPlugin          Type = "io.containerd.differ.v1"
	RuntimePluginV2     Type = "io.containerd.runtime.v2"
	GRPCPlugin          Type = "io.containerd.grpc.v1"
	TTRPCPlugin         Type = "io.containerd.ttrpc.v1"
	GCPlugin            Type = "io.containerd.gc.v1"
	EventPlugin         Type = "io.containerd.event.v1"
	LeasePlugin         Type = "io.containerd.lease.v1"
	ServicePlugin       Type = "io.containerd.service.v1"
	TransferPlugin      Type = "io.containerd.transfer.v1"
	InternalPlugin      Type = "io.containerd.internal.v1"
	NetworkPlugin       Type = "io.berth.network.v1"
	VolumePlugin        Type = "io.berth.volume.v1"
	CRIPlugin           Type = "io.berth.cri.v1"
	BerthGRPCPlugin     Type = "io.berth.grpc.v1"
	BerthServicePlugin  Type = "io.berth.service.v1"
	BerthInternalPlugin Type = "io.berth.internal.v1"
)

// All, in Requires, means "every plugin that does not itself require All":
// used by plugins such as introspection that must see everything else.
const All Type = "*"

// ErrSkipPlugin marks a plugin that cannot run on this host. Its text is what
// containerd clients (ctr plugins ls) look for to print "skip".
var ErrSkipPlugin = errors.New("skip plugin")

// Skip returns an error saying why a plugin cannot run here.
func Skip(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrSkipPlugin)
}

// Registration describes one plugin.
type Registration struct {
	Type Type
	ID   string
	// Config is a pointer to the plugin's default configuration; the daemon
	// decodes the [plugins."<type>.<id>"] section of the config file into it.
	Config any
	// Requires lists the plugin types that must be initialised first.
	Requires []Type
	// InitFn builds the plugin instance.
	InitFn func(*InitContext) (any, error)
}

// URI is the plugin's full name, "<type>.<id>".
func (r *Registration) URI() string { return string(r.Type) + "." + r.ID }

var (
	mu       sync.Mutex
	register []*Registration
)

// Register adds a plugin. It panics on an invalid or duplicate registration,
// since both are programming errors found at start-up.
func Register(r *Registration) {
	mu.Lock()
	defer mu.Unlock()
	if r.Type == "" || r.ID == "" || r.InitFn == nil {
		panic(fmt.Sprintf("plugin %q: type, id and init function are required", r.URI()))
	}
	if strings.ContainsAny(r.ID, ". /") {
		panic(fmt.Sprintf("plugin %q: id must not contain '.', ' ' or '/'", r.URI()))
	}
	for _, o := range register {
		if o.URI() == r.URI() {
			panic(fmt.Sprintf("plugin %q registered twice", r.URI()))
		}
	}
	register = append(register, r)
}

// Registrations returns every registered plugin, in registration order.
func Registrations() []*Registration {
	mu.Lock()
	defer mu.Unlock()
	return append([]*Registration(nil), register...)
}

// Graph orders regs so that each plugin comes after every plugin of the
// types it requires. Ties keep a stable order (type, then id) so start-up is
// reproducible. A requirement cycle is an error naming the plugins in it.
func Graph(regs []*Registration) ([]*Registration, error) {
	sorted := append([]*Registration(nil), regs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].URI() < sorted[j].URI() })

	byType := map[Type][]*Registration{}
	for _, r := range sorted {
		byType[r.Type] = append(byType[r.Type], r)
	}
	deps := func(r *Registration) []*Registration {
		var out []*Registration
		for _, t := range r.Requires {
			if t == All {
				for _, o := range sorted {
					if !o.requiresAll() {
						out = append(out, o)
					}
				}
				continue
			}
			out = append(out, byType[t]...)
		}
		return out
	}

	const (
		unvisited = iota
		visiting
		done
	)
	state := map[*Registration]int{}
	var order []*Registration
	var stack []*Registration
	var visit func(r *Registration) error
	visit = func(r *Registration) error {
		switch state[r] {
		case done:
			return nil
		case visiting:
			return cycleError(stack, r)
		}
		state[r] = visiting
		stack = append(stack, r)
		for _, d := range deps(r) {
			if d == r {
				continue
			}
			if err := visit(d); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[r] = done
		order = append(order, r)
		return nil
	}
	for _, r := range sorted {
		if err := visit(r); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func (r *Registration) requiresAll() bool {
	for _, t := range r.Requires {
		if t == All {
			return true
		}
	}
	return false
}

func cycleError(stack []*Registration, r *Registration) error {
	var names []string
	start := 0
	for i, s := range stack {
		if s == r {
			start = i
		}
	}
	for _, s := range stack[start:] {
		names = append(names, s.URI())
	}
	names = append(names, r.URI())
	return fmt.Errorf("plugin dependency cycle: %s", strings.Join(names, " -> "))
}
