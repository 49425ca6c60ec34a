package run

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/run/names"
)

// NetworkStatus is a container's network as it is now: empty unless it
// runs.
type NetworkStatus struct {
	// Sandbox is the container's namespace and files (for a container
	// joining another's network, the other's).
	Sandbox *network.Sandbox
	// Attachments are its networks with addresses and published ports,
	// in interface order.
	Attachments []*network.Attachment
}

// Ports are the host ports published now.
func (s NetworkStatus) Ports() []network.PortMapping {
	var out []network.PortMapping
	for _, a := range s.Attachments {
		out = append(out, a.Ports...)
	}
	return out
}

// NetworkStatuses returns the network state of the context namespace's
// containers that have one, by id.
func (m *Manager) NetworkStatuses(ctx context.Context) (map[string]NetworkStatus, error) {
	out := map[string]NetworkStatus{}
	if m.o.Network == nil {
		return out, nil
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	sbs, err := m.o.Network.Sandboxes(ctx)
	if err != nil {
		return nil, err
	}
	for _, sb := range sbs {
		out[sb.ID] = NetworkStatus{Sandbox: sb}
	}
	atts, err := m.o.Network.Attachments(ctx, network.AttachmentFilter{})
	if err != nil {
		return nil, err
	}
	for _, a := range atts {
		if a.Namespace == ns {
			st := out[a.ContainerID]
			st.Attachments = append(st.Attachments, a)
			out[a.ContainerID] = st
		}
	}
	return out, nil
}

// NetworkStatus returns container r's network state.
func (m *Manager) NetworkStatus(ctx context.Context, r Record) NetworkStatus {
	var st NetworkStatus
	if m.o.Network == nil {
		return st
	}
	id := r.ID
	if other, ok := joinedContainer(r.Config.Options); ok {
		id = other
	}
	if sb, err := m.o.Network.Sandbox(ctx, id); err == nil {
		st.Sandbox = sb
	}
	if id != r.ID {
		return st
	}
	atts, err := m.o.Network.Attachments(ctx, network.AttachmentFilter{ContainerID: id})
	if err == nil {
		st.Attachments = atts
	}
	return st
}

// Connect joins a container to another network (docker network
// connect): at once when it runs, and at each of its starts. Aliases are
// names it answers to there besides its name and short id.
func (m *Manager) Connect(ctx context.Context, ref, netRef string, aliases []string) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	if m.o.Network == nil {
		return fmt.Errorf("connect container %s: berthd has no network plugin: %w", names.Short(r.ID), errdefs.ErrUnavailable)
	}
	if IsNetworkMode(netRef) {
		return fmt.Errorf("a container cannot be connected to network mode %q (give it at create with --network): %w", netRef, errdefs.ErrInvalidArgument)
	}
	for _, a := range aliases {
		if err := validateAlias(a); err != nil {
			return err
		}
	}
	n, err := m.o.Network.Network(ctx, netRef)
	if err != nil {
		return networkNotFound(netRef, err)
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, err = m.get(ctx, r.ID); err != nil {
		return err
	}
	o := &r.Config.Options
	if mode := NetworkMode(*o); IsNetworkMode(mode) {
		return fmt.Errorf("container %s uses network mode %q and cannot join other networks: %w", names.Short(r.ID), mode, errdefs.ErrFailedPrecondition)
	}
	if slices.Contains(o.Networks, n.Name) {
		return fmt.Errorf("container %s is already connected to network %s: %w", names.Short(r.ID), n.Name, errdefs.ErrAlreadyExists)
	}
	if len(aliases) > 0 && n.Default {
		return fmt.Errorf("network-scoped aliases are for user-defined networks, not the default network %s: %w", n.Name, errdefs.ErrInvalidArgument)
	}
	o.Networks = append(o.Networks, n.Name)
	if len(aliases) > 0 {
		if o.Network.Aliases == nil {
			o.Network.Aliases = map[string][]string{}
		}
		o.Network.Aliases[n.Name] = aliases
	}
	if e.run != nil {
		// Ports stay with the first network.
		if err := m.attach(ctx, &r, n.Name, len(o.Networks) == 1); err != nil {
			return err
		}
	}
	if err := m.saveConfig(ctx, &r); err != nil {
		if e.run != nil {
			if derr := m.o.Network.Detach(ctx, r.ID, n.Name); derr != nil {
				slog.Warn("undo network connect", "id", r.ID, "network", n.Name, "error", derr)
			}
		}
		return err
	}
	return nil
}

// Disconnect takes a container off a network (docker network
// disconnect); force also drops a network that no longer exists.
func (m *Manager) Disconnect(ctx context.Context, ref, netRef string, force bool) error {
	ns, r, err := m.resolveManaged(ctx, ref)
	if err != nil {
		return err
	}
	if m.o.Network == nil {
		return fmt.Errorf("disconnect container %s: berthd has no network plugin: %w", names.Short(r.ID), errdefs.ErrUnavailable)
	}
	if IsNetworkMode(netRef) {
		return fmt.Errorf("a container cannot be disconnected from network mode %q: %w", netRef, errdefs.ErrInvalidArgument)
	}
	name := netRef
	if n, err := m.o.Network.Network(ctx, netRef); err == nil {
		name = n.Name
	} else if !errdefs.IsNotFound(err) || !force {
		return networkNotFound(netRef, err)
	}
	e := m.entry(ns, r.ID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, err = m.get(ctx, r.ID); err != nil {
		return err
	}
	o := &r.Config.Options
	if mode := NetworkMode(*o); IsNetworkMode(mode) {
		return fmt.Errorf("container %s uses network mode %q: there is nothing to disconnect: %w", names.Short(r.ID), mode, errdefs.ErrFailedPrecondition)
	}
	i := slices.Index(o.Networks, name)
	if i < 0 {
		return fmt.Errorf("container %s is not connected to network %s: %w", names.Short(r.ID), name, errdefs.ErrNotFound)
	}
	if e.run != nil {
		if err := m.o.Network.Detach(ctx, r.ID, name); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	// Off every network, the container has a namespace with only lo
	// until it is connected again.
	o.Networks = slices.Delete(o.Networks, i, i+1)
	delete(o.Network.Aliases, name)
	return m.saveConfig(ctx, &r)
}

// saveConfig writes r's config extension into its record.
func (m *Manager) saveConfig(ctx context.Context, r *Record) error {
	a, err := marshalExt(typeConfig, r.Config)
	if err != nil {
		return err
	}
	c := r.Container
	c.Extensions = map[string]typeurlAny{ExtensionConfig: a}
	updated, err := m.o.Containers.Update(ctx, c, "extensions."+ExtensionConfig)
	if err != nil {
		return fmt.Errorf("record network settings of container %s: %w", names.Short(r.ID), err)
	}
	r.Container = updated
	return nil
}

// networkNotFound words a lookup failure as docker does.
func networkNotFound(ref string, err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("network %s not found: %w", ref, errdefs.ErrNotFound)
	}
	return err
}
