package run

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/berthd/berth/core/containers"
)

// Extension keys of the containerd container record where berth keeps a
// container's settings (written at create, changed by rename) and its
// state (changed at every start and exit). Both hold JSON.
const (
	ExtensionConfig = "io.berth.container.v1"
	ExtensionState  = "io.berth.state.v1"
)

// Labels berth sets on the containerd record, so ctr shows them and
// filters find containers by name.
const (
	LabelName = "io.berth.name"
	// LabelImageRef holds the image reference the container came from.
	LabelImageRef = "io.berth.image"
)

// Type URLs of the extensions.
const (
	typeConfig = "types.berth.io/container/v1/Config"
	typeState  = "types.berth.io/container/v1/State"
)

// Restart policy names.
const (
	RestartNo            = "no"
	RestartOnFailure     = "on-failure"
	RestartAlways        = "always"
	RestartUnlessStopped = "unless-stopped"
)

// RestartPolicy says when berthd restarts a container that exited.
type RestartPolicy struct {
	Name string `json:"Name"`
	// MaximumRetryCount bounds on-failure restarts (0: no bound).
	MaximumRetryCount int `json:"MaximumRetryCount,omitempty"`
}

// ParseRestartPolicy reads "no", "on-failure[:N]", "always" or
// "unless-stopped" ("" is "no").
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	name, count, hasCount := strings.Cut(s, ":")
	p := RestartPolicy{Name: name}
	switch name {
	case "":
		p.Name = RestartNo
	case RestartNo, RestartAlways, RestartUnlessStopped:
	case RestartOnFailure:
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return RestartPolicy{}, fmt.Errorf("restart policy %q: the retry count must be a number >= 0: %w", s, errdefs.ErrInvalidArgument)
			}
			p.MaximumRetryCount = n
		}
		return p, nil
	default:
		return RestartPolicy{}, fmt.Errorf("restart policy %q: use no, on-failure[:max-retries], always or unless-stopped: %w", s, errdefs.ErrInvalidArgument)
	}
	if hasCount {
		return RestartPolicy{}, fmt.Errorf("restart policy %q: only on-failure takes a retry count: %w", s, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// Validate checks a policy that came from an API call.
func (p RestartPolicy) Validate() error {
	switch p.Name {
	case "", RestartNo, RestartAlways, RestartUnlessStopped:
		if p.MaximumRetryCount != 0 {
			return fmt.Errorf("restart policy %q takes no retry count: %w", p.Name, errdefs.ErrInvalidArgument)
		}
	case RestartOnFailure:
		if p.MaximumRetryCount < 0 {
			return fmt.Errorf("restart policy on-failure: negative retry count: %w", errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("restart policy %q: use no, on-failure, always or unless-stopped: %w", p.Name, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (p RestartPolicy) String() string {
	if p.Name == RestartOnFailure && p.MaximumRetryCount > 0 {
		return fmt.Sprintf("%s:%d", p.Name, p.MaximumRetryCount)
	}
	if p.Name == "" {
		return RestartNo
	}
	return p.Name
}

// LogConfig is where a container's output goes and how it rotates.
type LogConfig struct {
	Path    string `json:"Path"`
	MaxSize int64  `json:"MaxSize,omitempty"`
	MaxFile int    `json:"MaxFile,omitempty"`
}

// Port is a port to publish (-p): HostPort 0 asks for a free port, a
// HostPortEnd above HostPort for one free port of that range. The ports
// actually published are the network plugin's (see NetworkStatus).
type Port struct {
	HostIP        string `json:"HostIp,omitempty"`
	HostPort      int    `json:"HostPort"`
	HostPortEnd   int    `json:"HostPortEnd,omitempty"`
	ContainerPort int    `json:"ContainerPort"`
	Protocol      string `json:"Protocol"`
}

// Options are the docker run settings of a container, as given: sizes
// already parsed, the image as a full reference.
type Options struct {
	Image         string            `json:"Image"`
	Cmd           []string          `json:"Cmd,omitempty"`
	Entrypoint    []string          `json:"Entrypoint,omitempty"`
	EntrypointSet bool              `json:"EntrypointSet,omitempty"`
	Env           []string          `json:"Env,omitempty"`
	WorkingDir    string            `json:"WorkingDir,omitempty"`
	User          string            `json:"User,omitempty"`
	GroupAdd      []string          `json:"GroupAdd,omitempty"`
	Hostname      string            `json:"Hostname,omitempty"`
	Tty           bool              `json:"Tty,omitempty"`
	OpenStdin     bool              `json:"OpenStdin,omitempty"`
	StdinOnce     bool              `json:"StdinOnce,omitempty"`
	ReadOnly      bool              `json:"ReadonlyRootfs,omitempty"`
	Memory        int64             `json:"Memory,omitempty"`
	MemorySwap    int64             `json:"MemorySwap,omitempty"`
	NanoCPUs      int64             `json:"NanoCpus,omitempty"`
	CPUShares     int64             `json:"CpuShares,omitempty"`
	CpusetCpus    string            `json:"CpusetCpus,omitempty"`
	PidsLimit     int64             `json:"PidsLimit,omitempty"`
	ShmSize       int64             `json:"ShmSize,omitempty"`
	Sysctls       map[string]string `json:"Sysctls,omitempty"`
	Ulimits       []string          `json:"Ulimits,omitempty"`
	CapAdd        []string          `json:"CapAdd,omitempty"`
	CapDrop       []string          `json:"CapDrop,omitempty"`
	Privileged    bool              `json:"Privileged,omitempty"`
	Init          bool              `json:"Init,omitempty"`
	RestartPolicy RestartPolicy     `json:"RestartPolicy"`
	AutoRemove    bool              `json:"AutoRemove,omitempty"`
	Labels        map[string]string `json:"Labels,omitempty"`
	Runtime       string            `json:"Runtime,omitempty"`
	Snapshotter   string            `json:"Snapshotter,omitempty"`
	Platform      string            `json:"Platform,omitempty"`
	StopSignal    string            `json:"StopSignal,omitempty"`
	// StopTimeout is seconds; nil means the default.
	StopTimeout *int      `json:"StopTimeout,omitempty"`
	Log         LogConfig `json:"Log"`
	// Placeholders for the network and volume wiring.
	Ports    []Port   `json:"Ports,omitempty"`
	Networks []string `json:"Networks,omitempty"`

	// Networks are network names in order, or one mode (host, none,
	// container:<id>); Network the other network settings (network.go).
	Network NetworkOptions `json:"NetworkOptions,omitzero"`

	// MountOptions are the mount flags (volumes.go).
	MountOptions
}

// Config is what berth records about a container at create: the options
// with what create resolved.
type Config struct {
	Name    string    `json:"Name"`
	Created time.Time `json:"Created"`
	Options Options   `json:"Options"`
	// ImageID is the digest of the image config; Manifest the image
	// manifest's digest.
	ImageID           string `json:"ImageID"`
	Manifest          string `json:"Manifest"`
	ManifestMediaType string `json:"ManifestMediaType,omitempty"`
	// ImageStopSignal is the image's StopSignal, kept so stop does not
	// need the image.
	ImageStopSignal string `json:"ImageStopSignal,omitempty"`
	// Args are the process's arguments.
	Args []string `json:"Args"`
	// ChainID is the image layers' chain ID, the parent of the writable
	// snapshot.
	ChainID string `json:"ChainID"`
	// Mounts are the container's volumes, binds and tmpfs mounts as
	// create resolved them (volumes.go).
	Mounts []MountPoint `json:"Mounts,omitempty"`
}

// Container statuses, as docker names them.
const (
	StatusCreated    = "created"
	StatusRunning    = "running"
	StatusPaused     = "paused"
	StatusRestarting = "restarting"
	StatusRemoving   = "removing"
	StatusExited     = "exited"
	StatusDead       = "dead"
)

// State is a container's run state.
type State struct {
	Status    string    `json:"Status"`
	Pid       int       `json:"Pid,omitempty"`
	ExitCode  int       `json:"ExitCode"`
	Error     string    `json:"Error,omitempty"`
	OOMKilled bool      `json:"OOMKilled,omitempty"`
	StartedAt time.Time `json:"StartedAt,omitzero"`
	// FinishedAt is when the last run ended.
	FinishedAt   time.Time `json:"FinishedAt,omitzero"`
	RestartCount int       `json:"RestartCount"`
	// StoppedByUser marks a stop or kill asked for by a user, which
	// restart policies respect until the next start.
	StoppedByUser bool `json:"StoppedByUser,omitempty"`
}

// Running reports whether the container has a live task.
func (s State) Running() bool {
	return s.Status == StatusRunning || s.Status == StatusPaused
}

func marshalExt(typ string, v any) (typeurl.Any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &jsonAny{typeURL: typ, value: b}, nil
}

type jsonAny struct {
	typeURL string
	value   []byte
}

func (a *jsonAny) GetTypeUrl() string { return a.typeURL }
func (a *jsonAny) GetValue() []byte   { return a.value }

// Record is a containerd container record with berth's extensions read.
type Record struct {
	containers.Container
	// Managed is false for records berth did not create (ctr's).
	Managed bool
	Config  Config
	State   State
}

// decodeRecord reads berth's extensions of c.
func decodeRecord(c containers.Container) (Record, error) {
	r := Record{Container: c}
	cfg, ok := c.Extensions[ExtensionConfig]
	if !ok || cfg == nil {
		r.Config = Config{Name: c.ID, Created: c.CreatedAt, Options: Options{Image: c.Image}}
		return r, nil
	}
	r.Managed = true
	if err := json.Unmarshal(cfg.GetValue(), &r.Config); err != nil {
		return r, fmt.Errorf("container %s: extension %s: %w", c.ID, ExtensionConfig, err)
	}
	if st, ok := c.Extensions[ExtensionState]; ok && st != nil {
		if err := json.Unmarshal(st.GetValue(), &r.State); err != nil {
			return r, fmt.Errorf("container %s: extension %s: %w", c.ID, ExtensionState, err)
		}
	}
	if r.State.Status == "" {
		r.State.Status = StatusCreated
	}
	return r, nil
}
