package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(inspectCommand(g))
	})
}

// containerInspect is what `berth inspect CONTAINER` prints: Docker's
// layout, so scripts and templates written for docker inspect work.
type containerInspect struct {
	ID              string            `json:"Id"`
	Created         time.Time         `json:"Created"`
	Path            string            `json:"Path"`
	Args            []string          `json:"Args"`
	State           inspectState      `json:"State"`
	Image           string            `json:"Image"`
	ImageName       string            `json:"ImageName"`
	Name            string            `json:"Name"`
	RestartCount    int               `json:"RestartCount"`
	Driver          string            `json:"Driver"`
	SnapshotKey     string            `json:"SnapshotKey"`
	Platform        string            `json:"Platform"`
	LogPath         string            `json:"LogPath"`
	HostConfig      inspectHost       `json:"HostConfig"`
	Mounts          []inspectMount    `json:"Mounts"`
	Config          inspectConfig     `json:"Config"`
	NetworkSettings inspectNetworks   `json:"NetworkSettings"`
	SizeRw          int64             `json:"SizeRw"`
	Labels          map[string]string `json:"-"`
	Managed         bool              `json:"Managed"`
	inspectPaths
}

type inspectState struct {
	Status     string    `json:"Status"`
	Running    bool      `json:"Running"`
	Paused     bool      `json:"Paused"`
	Restarting bool      `json:"Restarting"`
	OOMKilled  bool      `json:"OOMKilled"`
	Dead       bool      `json:"Dead"`
	Pid        int       `json:"Pid"`
	ExitCode   int       `json:"ExitCode"`
	Error      string    `json:"Error"`
	StartedAt  time.Time `json:"StartedAt"`
	FinishedAt time.Time `json:"FinishedAt"`
}

type inspectRestart struct {
	Name              string `json:"Name"`
	MaximumRetryCount int    `json:"MaximumRetryCount"`
}

type inspectLog struct {
	Type   string            `json:"Type"`
	Config map[string]string `json:"Config"`
}

type inspectHost struct {
	RestartPolicy  inspectRestart `json:"RestartPolicy"`
	AutoRemove     bool           `json:"AutoRemove"`
	Runtime        string         `json:"Runtime"`
	Privileged     bool           `json:"Privileged"`
	ReadonlyRootfs bool           `json:"ReadonlyRootfs"`
	Init           bool           `json:"Init"`
	CapAdd         []string       `json:"CapAdd"`
	CapDrop        []string       `json:"CapDrop"`
	GroupAdd       []string       `json:"GroupAdd"`
	Memory         int64          `json:"Memory"`
	MemorySwap     int64          `json:"MemorySwap"`
	NanoCpus       int64          `json:"NanoCpus"`
	CPUShares      int64          `json:"CpuShares"`
	CpusetCpus     string         `json:"CpusetCpus"`
	PidsLimit      int64          `json:"PidsLimit"`
	ShmSize        int64          `json:"ShmSize"`
	Sysctls        []string       `json:"Sysctls"`
	Ulimits        []string       `json:"Ulimits"`
	LogConfig      inspectLog     `json:"LogConfig"`
	inspectHostNetwork
	inspectHostMounts
}

type inspectMount struct {
	Type        string `json:"Type"`
	Name        string `json:"Name,omitempty"`
	Source      string `json:"Source"`
	Destination string `json:"Destination"`
	Driver      string `json:"Driver,omitempty"`
	Mode        string `json:"Mode"`
	RW          bool   `json:"RW"`
	Propagation string `json:"Propagation"`
}

type inspectConfig struct {
	Hostname    string            `json:"Hostname"`
	User        string            `json:"User"`
	Tty         bool              `json:"Tty"`
	OpenStdin   bool              `json:"OpenStdin"`
	StdinOnce   bool              `json:"StdinOnce"`
	Env         []string          `json:"Env"`
	Cmd         []string          `json:"Cmd"`
	Entrypoint  []string          `json:"Entrypoint"`
	Image       string            `json:"Image"`
	WorkingDir  string            `json:"WorkingDir"`
	Labels      map[string]string `json:"Labels"`
	StopSignal  string            `json:"StopSignal,omitempty"`
	StopTimeout *int              `json:"StopTimeout,omitempty"`
}

func inspectCommand(g *globals) *cobra.Command {
	var format, kind string
	var size bool
	cmd := &cobra.Command{
		Use:     "inspect [flags] CONTAINER|IMAGE...",
		Short:   "show containers' or images' details as JSON",
		GroupID: "containers",
		Args:    minArgs(1, "CONTAINER|IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kind != "" && kind != "container" && kind != "image" {
				return usageError("invalid value %q for --type: use container or image", kind)
			}
			var tmpl *template.Template
			if format != "" && format != "json" {
				var err error
				if tmpl, err = template.New("format").Funcs(templateFuncs).Parse(format); err != nil {
					return usageError("--format: %v", err)
				}
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			out, failed := collectEach(g, args, func(ref string) (any, error) {
				return inspectAny(ctx, c, ref, kind)
			})
			if tmpl != nil {
				for _, v := range out {
					if err := execTemplate(g, tmpl, v); err != nil {
						return err
					}
				}
			} else if len(out) > 0 || failed == nil {
				if out == nil {
					out = []any{}
				}
				if err := writeJSON(g.stdout, out); err != nil {
					return err
				}
			}
			return failed
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Go template applied to each object, e.g. '{{.State.ExitCode}}'")
	cmd.Flags().StringVar(&kind, "type", "", "only look for a container or an image")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "include sizes (always included)")
	return cmd
}

// execTemplate applies tmpl to v as JSON-decoded data, so templates name
// the JSON fields ({{.State.Status}}) as with docker.
func execTemplate(g *globals, tmpl *template.Template, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var data any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers print as written, not as floats
	if err := dec.Decode(&data); err != nil {
		return err
	}
	if err := tmpl.Execute(g.stdout, data); err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	fmt.Fprintln(g.stdout)
	return nil
}

// inspectAny looks ref up as a container, then as an image.
func inspectAny(ctx context.Context, c *Client, ref, kind string) (any, error) {
	if kind != "image" {
		resp, err := containersClient(c).Inspect(ctx, &containersapi.ContainerRequest{Id: ref})
		if err == nil {
			return newContainerInspect(resp), nil
		}
		if !errdefs.IsNotFound(err) || kind == "container" {
			return nil, containerError(err)
		}
	}
	if _, err := normalizeImage(ref); err != nil {
		return nil, fmt.Errorf("no such object: %s", ref)
	}
	img, err := inspectImage(ctx, c, ref, "")
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("no such object: %s", ref)
		}
		return nil, err
	}
	return img, nil
}

func newContainerInspect(resp *containersapi.InspectResponse) containerInspect {
	ct, cfg, st := resp.Container, resp.Container.Config, resp.Container.State
	v := containerInspect{
		ID: ct.Id, Name: "/" + ct.Name, Image: ct.ImageId, ImageName: ct.Image,
		RestartCount: int(ct.RestartCount), Driver: ct.Snapshotter, SnapshotKey: ct.SnapshotKey,
		Platform: "linux", LogPath: ct.LogPath, SizeRw: ct.SizeRw, Managed: ct.Managed,
		Mounts: []inspectMount{},
		State: inspectState{
			Status: st.GetStatus(), Running: st.GetRunning(), Paused: st.GetPaused(), Restarting: st.GetRestarting(),
			OOMKilled: st.GetOomKilled(), Dead: st.GetStatus() == "dead", Pid: int(st.GetPid()), ExitCode: int(st.GetExitCode()),
			Error: st.GetError(), StartedAt: st.GetStartedAt().AsTime(), FinishedAt: st.GetFinishedAt().AsTime(),
		},
		NetworkSettings: newInspectNetworks(ct), inspectPaths: newInspectPaths(ct),
	}
	if ct.Created != nil {
		v.Created = ct.Created.AsTime()
	}
	if len(ct.Command) > 0 {
		v.Path, v.Args = ct.Command[0], ct.Command[1:]
	}
	if v.Args == nil {
		v.Args = []string{}
	}
	if st.GetStartedAt() == nil {
		v.State.StartedAt = time.Time{}
	}
	if st.GetFinishedAt() == nil {
		v.State.FinishedAt = time.Time{}
	}
	for _, m := range ct.Mounts {
		v.Mounts = append(v.Mounts, inspectMount{Type: m.Type, Name: m.Name, Source: m.Source, Destination: m.Destination,
			Driver: m.Driver, Mode: m.Mode, RW: !m.ReadOnly, Propagation: m.Propagation})
	}
	if cfg != nil {
		v.HostConfig = inspectHost{
			AutoRemove: cfg.AutoRemove, Runtime: ct.Runtime, Privileged: cfg.Privileged, ReadonlyRootfs: cfg.ReadOnly,
			Init: cfg.Init, CapAdd: cfg.CapAdd, CapDrop: cfg.CapDrop, GroupAdd: cfg.GroupAdd, Memory: cfg.Memory,
			MemorySwap: cfg.MemorySwap, NanoCpus: cfg.NanoCpus, CPUShares: cfg.CpuShares, CpusetCpus: cfg.CpusetCpus,
			PidsLimit: cfg.PidsLimit, ShmSize: cfg.ShmSize, Sysctls: cfg.Sysctls, Ulimits: cfg.Ulimits,
			LogConfig:          inspectLog{Type: "json-file", Config: map[string]string{}},
			inspectHostNetwork: newInspectHostNetwork(ct),
			inspectHostMounts:  newInspectHostMounts(cfg),
		}
		if p := cfg.RestartPolicy; p != nil {
			v.HostConfig.RestartPolicy = inspectRestart{Name: p.Name, MaximumRetryCount: int(p.MaximumRetryCount)}
		}
		if l := cfg.Log; l != nil && l.MaxSize > 0 {
			v.HostConfig.LogConfig.Config["max-size"] = fmt.Sprint(l.MaxSize)
			v.HostConfig.LogConfig.Config["max-file"] = fmt.Sprint(l.MaxFile)
		}
		v.Config = inspectConfig{
			Hostname: ct.Hostname, User: cfg.User, Tty: cfg.Tty, OpenStdin: cfg.OpenStdin, StdinOnce: cfg.StdinOnce,
			Cmd: cfg.Cmd, Image: ct.Image, WorkingDir: cfg.WorkingDir, Labels: userLabels(ct.Labels),
			StopSignal: cfg.StopSignal,
		}
		if cfg.EntrypointSet {
			v.Config.Entrypoint = cfg.Entrypoint
		}
		if cfg.StopTimeout >= 0 {
			t := int(cfg.StopTimeout)
			v.Config.StopTimeout = &t
		}
	}
	var spec specs.Spec
	if json.Unmarshal(resp.Spec, &spec) == nil && spec.Process != nil {
		v.Config.Env = spec.Process.Env
		if v.Config.WorkingDir == "" {
			v.Config.WorkingDir = spec.Process.Cwd
		}
		if len(cfg.GetCmd()) == 0 {
			v.Config.Cmd = spec.Process.Args
		}
	}
	return v
}

// userLabels drops berth's own labels (name, image) from a container's.
func userLabels(l map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range l {
		if !strings.HasPrefix(k, "io.berth.") && !strings.HasPrefix(k, "io.containerd.") && !strings.HasPrefix(k, "containerd.io/") {
			out[k] = v
		}
	}
	return out
}
