package plugins

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
)

// Meta is what a plugin tells introspection about itself.
type Meta struct {
	Platforms    []ocispec.Platform
	Exports      map[string]string
	Capabilities []string
}

// InitContext is handed to a plugin's InitFn.
type InitContext struct {
	Context context.Context
	// Root and State are the plugin's own folders: <root>/<type>.<id> and
	// <state>/<type>.<id>. They are not created for the plugin.
	Root  string
	State string
	// Config is the plugin's decoded configuration (Registration.Config).
	Config any
	// Properties carries daemon-wide values: the keys below.
	Properties map[string]string
	// Meta is filled in by the plugin for introspection.
	Meta *Meta

	set *Set
}

// Daemon-wide properties available to every plugin.
const (
	PropertyRootDir      = "io.berth.root"
	PropertyStateDir     = "io.berth.state"
	PropertyGRPCAddress  = "io.berth.grpc.address"
	PropertyTTRPCAddress = "io.berth.ttrpc.address"
	PropertyConfigPath   = "io.berth.config.path"
)

// NewContext prepares the init context of registration r, with config its
// decoded configuration (nil means the registration's defaults).
func NewContext(ctx context.Context, r *Registration, set *Set, root, state string, config any, props map[string]string) *InitContext {
	if config == nil {
		config = r.Config
	}
	return &InitContext{
		Context:    ctx,
		Root:       filepath.Join(root, r.URI()),
		State:      filepath.Join(state, r.URI()),
		Config:     config,
		Properties: props,
		Meta:       &Meta{Exports: map[string]string{}},
		set:        set,
	}
}

// Plugins gives access to every plugin initialised so far.
func (ic *InitContext) Plugins() *Set { return ic.set }

// GetSingle returns the only initialised instance of type t; it fails when
// there is none or more than one.
func (ic *InitContext) GetSingle(t Type) (any, error) {
	found := ic.set.ByType(t)
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no plugin of type %s: %w", t, errdefs.ErrNotFound)
	case 1:
		return found[0].Instance()
	}
	return nil, fmt.Errorf("more than one plugin of type %s: %w", t, errdefs.ErrFailedPrecondition)
}

// GetByID returns the instance of plugin t.id, or its init error.
func (ic *InitContext) GetByID(t Type, id string) (any, error) {
	p := ic.set.Get(t, id)
	if p == nil {
		return nil, fmt.Errorf("plugin %s.%s: %w", t, id, errdefs.ErrNotFound)
	}
	return p.Instance()
}

// GetByType returns the working instances of type t, by id. Plugins that
// failed or were skipped are left out.
func (ic *InitContext) GetByType(t Type) map[string]any {
	out := map[string]any{}
	for _, p := range ic.set.ByType(t) {
		if inst, err := p.Instance(); err == nil {
			out[p.Registration.ID] = inst
		}
	}
	return out
}

// Plugin is one plugin after its init ran.
type Plugin struct {
	Registration *Registration
	Meta         Meta
	instance     any
	err          error
}

// Instance returns the plugin's instance or its init error.
func (p *Plugin) Instance() (any, error) { return p.instance, p.err }

// Err is the init error, nil when the plugin is running.
func (p *Plugin) Err() error { return p.err }

// Set holds the plugins in the order they were initialised.
type Set struct {
	ordered []*Plugin
	byURI   map[string]*Plugin
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{byURI: map[string]*Plugin{}} }

// Add records the outcome of one plugin's init.
func (s *Set) Add(r *Registration, meta Meta, instance any, err error) *Plugin {
	p := &Plugin{Registration: r, Meta: meta, instance: instance, err: err}
	s.ordered = append(s.ordered, p)
	s.byURI[r.URI()] = p
	return p
}

// Get returns plugin t.id or nil.
func (s *Set) Get(t Type, id string) *Plugin { return s.byURI[string(t)+"."+id] }

// ByType returns the plugins of type t in init order.
func (s *Set) ByType(t Type) []*Plugin {
	var out []*Plugin
	for _, p := range s.ordered {
		if p.Registration.Type == t {
			out = append(out, p)
		}
	}
	return out
}

// All returns every plugin in init order.
func (s *Set) All() []*Plugin { return append([]*Plugin(nil), s.ordered...) }

// GRPCService is implemented by plugin instances that serve gRPC services.
type GRPCService interface {
	Register(*grpc.Server) error
}

// TTRPCService is implemented by plugin instances that serve ttrpc services
// on the shims' socket.
type TTRPCService interface {
	RegisterTTRPC(*ttrpc.Server) error
}

// ProxyFactory builds the registration of an external plugin of one kind
// ("snapshot", "content") served at address.
type ProxyFactory func(name, address string) *Registration

var proxyFactories = map[string]ProxyFactory{}

// RegisterProxyType lets a package serve [proxy_plugins] entries of kind.
func RegisterProxyType(kind string, f ProxyFactory) {
	mu.Lock()
	defer mu.Unlock()
	proxyFactories[kind] = f
}

// ProxyType returns the factory for kind, or nil.
func ProxyType(kind string) ProxyFactory {
	mu.Lock()
	defer mu.Unlock()
	return proxyFactories[kind]
}
