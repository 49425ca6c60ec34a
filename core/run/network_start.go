package run

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/network"
	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/core/run/names"
)

// netSetup is a container's network being set up for one start: the
// sandbox exists and the spec points at it; the attachments to its
// networks are made in the background while the task is created (the
// runtime only needs the namespace to exist), and must be complete
// before the task starts.
type netSetup struct {
	done    chan struct{}
	err     error
	release func()
}

// wait returns once the attachments are made, with their error.
func (n *netSetup) wait() error {
	<-n.done
	return n.err
}

// undo waits for the attachments, then removes the network again (for a
// task that failed to be created or started).
func (n *netSetup) undo() {
	<-n.done
	n.release()
}

func doneSetup(release func()) *netSetup {
	n := &netSetup{done: make(chan struct{}), release: release}
	close(n.done)
	return n
}

// setupNetwork prepares container r's network before its task is
// created: a sandbox (namespace and hosts, resolv.conf and hostname
// files) joined to each of its networks, the first publishing its ports.
// The spec gets the namespace and the files. On error nothing of it is
// left.
func (m *Manager) setupNetwork(ctx context.Context, ns string, r *Record, spec *specs.Spec) (*netSetup, error) {
	o := r.Config.Options
	nothing := func() {}
	if otherID, ok := joinedContainer(o); ok {
		return doneSetup(nothing), m.joinNetwork(ctx, r, otherID, spec)
	}
	if m.o.Network == nil {
		if len(o.Networks) > 0 && !isHostNetwork(o) && o.Networks[0] != NetworkNone {
			return nil, fmt.Errorf("container %s joins network %s but berthd has no network plugin: %w", names.Short(r.ID), o.Networks[0], errdefs.ErrUnavailable)
		}
		return doneSetup(nothing), nil
	}
	// A sandbox left by a run whose end berthd did not see.
	m.releaseNetwork(ctx, ns, r.ID)
	sb, err := m.o.Network.CreateSandbox(ctx, network.SandboxRequest{
		ID: r.ID, Hostname: spec.Hostname, HostNetwork: isHostNetwork(o),
		DNS: o.Network.dns(), ExtraHosts: o.Network.ExtraHosts,
	})
	if err != nil {
		return nil, fmt.Errorf("network sandbox: %w", err)
	}
	release := func() { m.releaseNetwork(ctx, ns, r.ID) }
	if err := applySandbox(ctx, spec, sb); err != nil {
		release()
		return nil, err
	}
	n := &netSetup{done: make(chan struct{}), release: release}
	go func() {
		defer close(n.done)
		if sb.HostNetwork {
			return
		}
		for i, net := range o.Networks {
			if net != NetworkNone {
				if n.err = m.attach(ctx, r, net, i == 0); n.err != nil {
					return
				}
			}
		}
	}()
	return n, nil
}

// networkReady waits for the attachments of n made while task was
// created; when they failed, the task is deleted.
func (m *Manager) networkReady(ctx context.Context, r *Record, task Task, n *netSetup) error {
	err := n.wait()
	if err != nil {
		if _, derr := task.Delete(ctx); derr != nil {
			slog.Warn("delete task whose network failed", "id", r.ID, "error", derr)
		}
	}
	return err
}

// attach joins container r to network net; first carries the ports and
// fixed addresses.
func (m *Manager) attach(ctx context.Context, r *Record, net string, first bool) error {
	o := r.Config.Options
	req := network.AttachRequest{ContainerID: r.ID, Name: r.Config.Name, Network: net, Aliases: m.aliases(ctx, r, net)}
	if first {
		ports, err := PortMappings(o.Ports)
		if err != nil {
			return err
		}
		req.Ports, req.MAC = ports, o.Network.MAC
		if o.Network.IP != "" {
			if req.IP, err = netip.ParseAddr(o.Network.IP); err != nil {
				return fmt.Errorf("IP address %q: %w", o.Network.IP, errdefs.ErrInvalidArgument)
			}
		}
	}
	if _, err := m.o.Network.Attach(ctx, req); err != nil {
		return m.explainAttach(ctx, req, err)
	}
	return nil
}

// aliases are the names container r answers to on net besides its name:
// its short id (on user networks, as docker's) and its aliases there.
func (m *Manager) aliases(ctx context.Context, r *Record, net string) []string {
	var out []string
	if n, err := m.o.Network.Network(ctx, net); err == nil && !n.Default {
		out = append(out, names.Short(r.ID))
	}
	for _, a := range r.Config.Options.Network.Aliases[net] {
		if !slices.Contains(out, a) && a != r.Config.Name {
			out = append(out, a)
		}
	}
	return out
}

// explainAttach names the container holding a host port an attachment
// wanted, by its name rather than the plugin's namespace/id.
func (m *Manager) explainAttach(ctx context.Context, req network.AttachRequest, err error) error {
	if !errdefs.IsAlreadyExists(err) || len(req.Ports) == 0 {
		return err
	}
	all, lerr := m.o.Network.Attachments(ctx, network.AttachmentFilter{})
	if lerr != nil {
		return err
	}
	ns, _ := namespaces.Namespace(ctx)
	for _, a := range all {
		if a.ContainerID == req.ContainerID && a.Namespace == ns {
			continue
		}
		for _, held := range a.Ports {
			for _, want := range req.Ports {
				if !sameHostPort(held, want) {
					continue
				}
				who := fmt.Sprintf("container %s (%s)", a.Name, names.Short(a.ContainerID))
				if a.Name == "" {
					who = "container " + names.Short(a.ContainerID)
				}
				if a.Namespace != ns {
					who += " of namespace " + a.Namespace
				}
				return fmt.Errorf("host port %s is already published by %s: %w", hostPortString(held), who, errdefs.ErrAlreadyExists)
			}
		}
	}
	return err
}

// sameHostPort reports whether want (maybe a range or any port) could
// have clashed with the published held.
func sameHostPort(held, want network.PortMapping) bool {
	if want.HostPort == 0 {
		return false
	}
	for _, p := range want.Candidates() {
		w := want
		w.HostPort, w.HostPortEnd = p, 0
		if held.Overlaps(w) {
			return true
		}
	}
	return false
}

func hostPortString(p network.PortMapping) string {
	ip := "0.0.0.0"
	if p.HostIP.IsValid() {
		ip = p.HostIP.String()
	}
	return net.JoinHostPort(ip, strconv.Itoa(int(p.HostPort))) + "/" + p.Protocol
}

// joinNetwork puts container r into the namespace of container otherID,
// with its hosts, resolv.conf and hostname files. The other container
// must be running: only a running container has a sandbox.
func (m *Manager) joinNetwork(ctx context.Context, r *Record, otherID string, spec *specs.Spec) error {
	if m.o.Network == nil {
		return fmt.Errorf("container %s joins container %s's network but berthd has no network plugin: %w", names.Short(r.ID), names.Short(otherID), errdefs.ErrUnavailable)
	}
	sb, err := m.o.Network.Sandbox(ctx, otherID)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("cannot join the network of container %s: it is not running: %w", names.Short(otherID), errdefs.ErrFailedPrecondition)
	} else if err != nil {
		return err
	}
	return applySandbox(ctx, spec, sb)
}

// applySandbox points spec at sandbox sb: its namespace (none of its own
// for the host's network) and its files over /etc/hosts, /etc/resolv.conf
// and /etc/hostname, except where the container mounts something of its
// own there.
func applySandbox(ctx context.Context, spec *specs.Spec, sb *network.Sandbox) error {
	nsOpt := oci.WithHostNamespace(specs.NetworkNamespace)
	if !sb.HostNetwork {
		nsOpt = oci.WithNetNSPath(sb.NetNS)
	}
	if err := nsOpt(ctx, spec); err != nil {
		return err
	}
	files := oci.HostsFiles{Hosts: sb.HostsPath, ResolvConf: sb.ResolvConfPath, Hostname: sb.HostnamePath}
	for _, mnt := range spec.Mounts {
		switch path.Clean(mnt.Destination) {
		case "/etc/hosts":
			files.Hosts = ""
		case "/etc/resolv.conf":
			files.ResolvConf = ""
		case "/etc/hostname":
			files.Hostname = ""
		}
	}
	return oci.WithHostsFiles(files)(ctx, spec)
}

// releaseNetwork tears down container id's sandbox and attachments, if
// it has any. It is idempotent, cheap when there is nothing, and logs
// rather than fails: the network plugin keeps what it could not remove
// and a later call (rm) retries.
func (m *Manager) releaseNetwork(ctx context.Context, ns, id string) {
	if m.o.Network == nil {
		return
	}
	ctx = namespaces.WithNamespace(ctx, ns)
	if _, err := m.o.Network.Sandbox(ctx, id); errdefs.IsNotFound(err) {
		atts, err := m.o.Network.Attachments(ctx, network.AttachmentFilter{ContainerID: id})
		if err == nil && len(atts) == 0 {
			return
		}
	}
	start := time.Now()
	if err := m.o.Network.RemoveSandbox(ctx, id); err != nil {
		slog.Warn("release container network", "namespace", ns, "id", id, "error", err)
		return
	}
	slog.Debug("released container network", "namespace", ns, "id", id, "took", time.Since(start))
}

// TaskGone is told that container id's task went away because its shim
// died (while berthd ran, or while it was down: the runtime reports those
// at start). Unless the container runs again meanwhile, its network is
// released at once; the monitor records the exit as usual.
func (m *Manager) TaskGone(ns, id string) {
	if m.o.Network == nil || m.ctx.Err() != nil {
		return // no network, or berthd is stopping: the next start releases it
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		e := m.entry(ns, id)
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.run != nil && e.run.task != nil {
			if _, err := e.run.task.Status(namespaces.WithNamespace(m.ctx, ns)); err == nil {
				return // a new run, which owns the network now
			}
		}
		m.releaseNetwork(context.WithoutCancel(m.ctx), ns, id)
	}()
}
