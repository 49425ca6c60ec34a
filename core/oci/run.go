package oci

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RunConfig holds docker run style settings, already parsed (sizes in
// bytes, CPUs in billionths: see ParseSize, ParseCPUs, ParseUlimit,
// ReadEnvFile). SpecOpts turns it into options in the order they must
// apply; zero values mean "as Docker does by default".
type RunConfig struct {
	// Rootfs is the host path of the container's root filesystem, read
	// for /etc/passwd and /etc/group; "" allows only numeric users.
	Rootfs    string
	Image     ocispec.ImageConfig
	Overrides ImageOverrides
	GroupAdd  []string

	// Hostname defaults to the first 12 characters of the container id.
	Hostname string
	TTY      bool

	HostPID, HostIPC, HostUTS, HostNetwork bool
	// NetNSPath joins a network namespace prepared by the network plugin.
	NetNSPath string
	Sysctls   map[string]string

	Memory, MemorySwap int64
	NanoCPUs           int64
	CPUShares          uint64
	CpusetCpus         string
	CpusetMems         string
	PidsLimit          int64
	// CgroupsPath replaces the default "/<namespace>/<id>" cgroup path.
	CgroupsPath string

	Ulimits     []specs.POSIXRlimit
	OOMScoreAdj *int
	Annotations map[string]string

	CapAdd, CapDrop []string
	Privileged      bool
	NoNewPrivileges bool
	// SeccompProfile replaces the default profile; SeccompUnconfined
	// turns seccomp off. A privileged container is unconfined unless
	// SeccompProfile is set.
	SeccompProfile    *specs.LinuxSeccomp
	SeccompUnconfined bool

	ReadonlyRootfs bool
	ShmSize        int64
	Mounts         []specs.Mount
	HostsFiles     HostsFiles
	// InitBinary, when set, is the host path of the init to run the
	// process under (docker --init).
	InitBinary string
}

// SpecOpts returns the options that give a container c's settings; id
// names the container (its default hostname).
func (c *RunConfig) SpecOpts(id string) []SpecOpt {
	opts := []SpecOpt{WithImageConfig(c.Rootfs, c.Image, c.Overrides)}
	if len(c.GroupAdd) > 0 {
		opts = append(opts, WithAdditionalGroups(c.Rootfs, c.GroupAdd...))
	}
	opts = append(opts, c.namespaceOpts(id)...)
	opts = append(opts,
		WithTTY(c.TTY),
		WithMemory(c.Memory, c.MemorySwap),
		WithCPUs(c.NanoCPUs),
		WithCPUShares(c.CPUShares),
		WithCPUSet(c.CpusetCpus, c.CpusetMems),
		WithPidsLimit(c.PidsLimit),
		WithNoNewPrivileges(c.NoNewPrivileges),
	)
	if c.CgroupsPath != "" {
		opts = append(opts, WithCgroupsPath(c.CgroupsPath))
	}
	if len(c.Ulimits) > 0 {
		opts = append(opts, WithRlimits(c.Ulimits...))
	}
	if c.OOMScoreAdj != nil {
		opts = append(opts, WithOOMScoreAdj(*c.OOMScoreAdj))
	}
	if len(c.Annotations) > 0 {
		opts = append(opts, WithAnnotations(c.Annotations))
	}
	opts = append(opts, c.securityOpts()...)
	opts = append(opts, WithReadonlyRootfs(c.ReadonlyRootfs))
	if c.ShmSize != 0 {
		opts = append(opts, WithShmSize(c.ShmSize))
	}
	if len(c.Mounts) > 0 {
		opts = append(opts, WithMounts(c.Mounts...))
	}
	opts = append(opts, WithHostsFiles(c.HostsFiles))
	if c.InitBinary != "" {
		opts = append(opts, WithInit(c.InitBinary))
	}
	return opts
}

func (c *RunConfig) namespaceOpts(id string) []SpecOpt {
	var opts []SpecOpt
	if c.HostUTS {
		opts = append(opts, WithHostNamespace(specs.UTSNamespace))
	} else {
		name := c.Hostname
		if name == "" {
			name = id[:min(12, len(id))]
		}
		opts = append(opts, WithHostname(name))
	}
	if c.HostPID {
		opts = append(opts, WithHostNamespace(specs.PIDNamespace))
	}
	if c.HostIPC {
		opts = append(opts, WithHostNamespace(specs.IPCNamespace))
	}
	switch {
	case c.HostNetwork:
		opts = append(opts, WithHostNamespace(specs.NetworkNamespace))
	case c.NetNSPath != "":
		opts = append(opts, WithNetNSPath(c.NetNSPath))
	}
	opts = append(opts, WithNetworkSysctlDefaults())
	if len(c.Sysctls) > 0 {
		opts = append(opts, WithSysctls(c.Sysctls))
	}
	return opts
}

func (c *RunConfig) securityOpts() []SpecOpt {
	var opts []SpecOpt
	if len(c.CapAdd) > 0 || len(c.CapDrop) > 0 {
		opts = append(opts, WithCapabilities(c.CapAdd, c.CapDrop))
	}
	if c.Privileged {
		opts = append(opts, WithPrivileged())
	}
	switch {
	case c.SeccompProfile != nil:
		opts = append(opts, WithSeccompProfile(c.SeccompProfile))
	case c.SeccompUnconfined || c.Privileged:
		opts = append(opts, WithSeccompUnconfined())
	default:
		opts = append(opts, WithDefaultSeccomp())
	}
	return opts
}

// Spec generates the spec of container id in namespace with c's settings.
func (c *RunConfig) Spec(ctx context.Context, namespace, id string) (*specs.Spec, error) {
	return Generate(ctx, namespace, id, c.SpecOpts(id)...)
}
