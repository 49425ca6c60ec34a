package oci

import (
	"context"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/moby/sys/userns"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var namespaceTypes = []specs.LinuxNamespaceType{
	specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace,
	specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace,
}

// WithNamespace gives the container the namespace of type t: a new one
// when nsPath is empty, else the one at nsPath (e.g. /proc/<pid>/ns/net or
// a bind-mounted netns file).
func WithNamespace(t specs.LinuxNamespaceType, nsPath string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if !slices.Contains(namespaceTypes, t) {
			return invalid("unknown namespace type %q", t)
		}
		if nsPath != "" && !path.IsAbs(nsPath) {
			return invalid("%s namespace path %q is not absolute", t, nsPath)
		}
		l := ensureLinux(s)
		for i := range l.Namespaces {
			if l.Namespaces[i].Type == t {
				l.Namespaces[i].Path = nsPath
				return nil
			}
		}
		l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t, Path: nsPath})
		return nil
	}
}

// WithNetNSPath joins the network namespace at nsPath (prepared by the
// network plugin).
func WithNetNSPath(nsPath string) SpecOpt {
	if nsPath == "" {
		return func(context.Context, *specs.Spec) error {
			return invalid("network namespace path is empty")
		}
	}
	return WithNamespace(specs.NetworkNamespace, nsPath)
}

// WithHostNamespace removes the namespace of type t, so the container
// shares the host's (docker --pid=host, --network=host, --ipc=host,
// --uts=host). With the host's UTS namespace the hostname is left alone.
func WithHostNamespace(t specs.LinuxNamespaceType) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if !slices.Contains(namespaceTypes, t) {
			return invalid("unknown namespace type %q", t)
		}
		l := ensureLinux(s)
		l.Namespaces = slices.DeleteFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
		if t == specs.UTSNamespace {
			s.Hostname = ""
		}
		return nil
	}
}

// ownsNamespace reports whether the container gets a new namespace of
// type t (listed, no path).
func ownsNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
		return n.Type == t && n.Path == ""
	})
}

// WithSysctls sets kernel parameters, replacing ones with the same key.
// Only namespaced parameters are allowed (Validate checks the container
// has the namespace): net.*, the IPC ones and kernel.hostname/domainname.
func WithSysctls(sysctls map[string]string) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		l := ensureLinux(s)
		if l.Sysctl == nil {
			l.Sysctl = make(map[string]string, len(sysctls))
		}
		maps.Copy(l.Sysctl, sysctls)
		return nil
	}
}

// ipcSysctls are the IPC namespace's kernel parameters; fs.mqueue.* too.
var ipcSysctls = []string{
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
}

// validateSysctl checks key names a parameter of a namespace the container
// has (by type; a joined namespace counts: the runtime checks it is not
// the host's). Anything else would change the whole host.
func validateSysctl(key string, have map[specs.LinuxNamespaceType]bool) error {
	k := strings.ReplaceAll(key, "/", ".")
	if k == "" || strings.ContainsAny(k, " \t\n\x00") || strings.Contains(k, "..") {
		return invalid("sysctl name %q is malformed", key)
	}
	var need specs.LinuxNamespaceType
	switch {
	case slices.Contains(ipcSysctls, k) || strings.HasPrefix(k, "fs.mqueue."):
		need = specs.IPCNamespace
	case strings.HasPrefix(k, "net."):
		need = specs.NetworkNamespace
	case k == "kernel.hostname" || k == "kernel.domainname":
		need = specs.UTSNamespace
	default:
		return invalid("sysctl %q is not namespaced; setting it would change the host", key)
	}
	if !have[need] {
		return invalid("sysctl %q needs a %s namespace of the container's own", key, need)
	}
	return nil
}

// WithNetworkSysctlDefaults sets what Docker sets in a container's own
// network namespace: unprivileged ICMP echo sockets for every group (so
// ping works without CAP_NET_RAW) and no privileged port range (so a
// non-root process can bind port 80). Only parameters the host kernel has
// are set (ping sockets not inside a user namespace, where the range
// cannot be mapped), and values already in the spec are kept. Without a
// network namespace it does nothing.
func WithNetworkSysctlDefaults() SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if s.Linux == nil || !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
			return n.Type == specs.NetworkNamespace
		}) {
			return nil
		}
		set := func(key, value string) {
			if _, ok := s.Linux.Sysctl[key]; ok || !sysctlExists(key) {
				return
			}
			if s.Linux.Sysctl == nil {
				s.Linux.Sysctl = map[string]string{}
			}
			s.Linux.Sysctl[key] = value
		}
		if !userns.RunningInUserNS() {
			set("net.ipv4.ping_group_range", "0 2147483647")
		}
		set("net.ipv4.ip_unprivileged_port_start", "0")
		return nil
	}
}

// sysctlSeen caches sysctlExists: the host's set of parameters does not
// change while berthd runs, and specs are generated per container.
var sysctlSeen sync.Map

func sysctlExists(key string) bool {
	if v, ok := sysctlSeen.Load(key); ok {
		return v.(bool)
	}
	_, err := os.Stat(path.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
	sysctlSeen.Store(key, err == nil)
	return err == nil
}
