package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	introspection "github.com/containerd/containerd/api/services/introspection/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/google/uuid"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/mount"
	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/internal/protoconv"
	berthimages "github.com/berthd/berth/proto/berth/images/v1"
)

// Type URLs of the OCI spec and process in Anys, as containerd clients
// write them.
const (
	specTypeURL    = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
	processTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
	// fallbackRuntime is used when berthd does not say its default.
	fallbackRuntime = "io.berth.runc.v2"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(containersCommand(g))
	})
}

func containersCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "containers",
		Aliases: []string{"container", "c"},
		Short:   "manage container records (ctr-style)",
		GroupID: "admin",
	}
	cmd.AddCommand(containersCreateCommand(g), containersLsCommand(g), containersInfoCommand(g),
		containersRmCommand(g), containersLabelCommand(g))
	return cmd
}

// createOptions are the settings of `containers create`.
type createOptions struct {
	runtime, snapshotter, cwd, user string
	env, labels                     []string
	tty                             bool
}

func containersCreateCommand(g *globals) *cobra.Command {
	var o createOptions
	cmd := &cobra.Command{
		Use:   "create [flags] IMAGE ID [COMMAND [ARG...]]",
		Short: "create a container from an unpacked image: a snapshot named ID and a spec from the image config",
		Args:  minArgs(2, "IMAGE ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			return createContainer(ctx, c, args[0], args[1], args[2:], o)
		},
	}
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.StringVar(&o.runtime, "runtime", "", "runtime name, e.g. io.containerd.runc.v2 (default: berthd's)")
	fl.StringVar(&o.snapshotter, "snapshotter", "", "snapshotter (default: berthd's)")
	fl.StringVar(&o.cwd, "cwd", "", "working directory of the process")
	fl.StringVarP(&o.user, "user", "u", "", "user[:group] of the process (names need root: the rootfs is mounted to look them up)")
	fl.StringArrayVar(&o.env, "env", nil, "environment variable KEY=VALUE")
	fl.StringArrayVar(&o.labels, "label", nil, "label KEY=VALUE")
	fl.BoolVarP(&o.tty, "tty", "t", false, "give the process a terminal")
	return cmd
}

// createContainer prepares the snapshot ID on the image's top layer and
// records the container, under a lease so that garbage collection cannot
// take the snapshot in between.
func createContainer(ctx context.Context, c *Client, image, id string, args []string, o createOptions) error {
	full, err := normalizeImage(image)
	if err != nil {
		return err
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return err
	}
	if o.runtime == "" {
		o.runtime = defaultRuntime(ctx, c)
	}
	imgs := berthimages.NewImagesClient(c.Conn())
	unpacked, err := imgs.Unpack(ctx, &berthimages.UnpackRequest{Name: full, Snapshotter: o.snapshotter})
	if err != nil {
		return fmt.Errorf("unpack %s: %w", image, err)
	}
	inspect, err := imgs.Inspect(ctx, &berthimages.InspectRequest{Name: full})
	if err != nil {
		return err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(inspect.Config, &cfg); err != nil {
		return fmt.Errorf("config of %s: %w", image, err)
	}
	ctx, done, err := withTempLease(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	prep, err := snapshotsapi.NewSnapshotsClient(c.Conn()).Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{
		Snapshotter: unpacked.Snapshotter, Key: id, Parent: unpacked.ChainId,
	})
	if err != nil {
		return fmt.Errorf("prepare snapshot %s: %w", id, err)
	}
	spec, err := containerSpec(ctx, c.Namespace(), id, cfg.Config, args, o, protoconv.MountsFromProto(prep.Mounts))
	if err == nil {
		_, err = containersapi.NewContainersClient(c.Conn()).Create(ctx, &containersapi.CreateContainerRequest{Container: &containersapi.Container{
			ID: id, Image: full, Labels: labels,
			Runtime:     &containersapi.Container_Runtime{Name: o.runtime},
			Spec:        spec,
			Snapshotter: unpacked.Snapshotter, SnapshotKey: id,
		}})
	}
	if err != nil {
		snapshotsapi.NewSnapshotsClient(c.Conn()).Remove(context.WithoutCancel(ctx), &snapshotsapi.RemoveSnapshotRequest{Snapshotter: unpacked.Snapshotter, Key: id})
		return err
	}
	return nil
}

// containerSpec generates the OCI spec from the image config, mounting
// the rootfs only when a user name must be looked up in it.
func containerSpec(ctx context.Context, ns, id string, img ocispec.ImageConfig, args []string, o createOptions, rootfs []mount.Mount) (*anypb.Any, error) {
	rc := &oci.RunConfig{
		Image:     img,
		Overrides: oci.ImageOverrides{Args: args, Env: o.env, WorkingDir: o.cwd, User: o.user},
		TTY:       o.tty,
	}
	gen := func() (*specs.Spec, error) { return oci.Generate(ctx, ns, id, rc.SpecOpts(id)...) }
	user := o.user
	if user == "" {
		user = img.User
	}
	var spec *specs.Spec
	var err error
	if needsRootfs(user) {
		err = mount.WithTempMount(rootfs, func(root string) error {
			rc.Rootfs = root
			spec, err = gen()
			return err
		})
	} else {
		spec, err = gen()
	}
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	return &anypb.Any{TypeUrl: specTypeURL, Value: data}, nil
}

// needsRootfs reports whether user names a user or group by name.
func needsRootfs(user string) bool {
	for _, part := range strings.Split(user, ":") {
		if _, err := strconv.Atoi(part); part != "" && err != nil {
			return true
		}
	}
	return false
}

// withTempLease returns ctx carrying a new lease that expires by itself,
// and a function deleting it.
func withTempLease(ctx context.Context, c *Client) (context.Context, func(), error) {
	ls := leasesapi.NewLeasesClient(c.Conn())
	id := "berth-create-" + uuid.NewString()
	_, err := ls.Create(ctx, &leasesapi.CreateRequest{ID: id, Labels: map[string]string{
		"containerd.io/gc.expire": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("create lease: %w", err)
	}
	done := func() {
		ls.Delete(context.WithoutCancel(ctx), &leasesapi.DeleteRequest{ID: id})
	}
	return metadata.AppendToOutgoingContext(ctx, leases.GRPCHeader, id), done, nil
}

// defaultRuntime asks berthd for its default runtime.
func defaultRuntime(ctx context.Context, c *Client) string {
	resp, err := introspection.NewIntrospectionClient(c.Conn()).Plugins(ctx, &introspection.PluginsRequest{
		Filters: []string{`type==io.berth.internal.v1,id==defaults`},
	})
	if err == nil {
		for _, p := range resp.Plugins {
			if r := p.Exports["default_runtime"]; r != "" {
				return r
			}
		}
	}
	return fallbackRuntime
}

type containerRow struct {
	ID      string            `json:"id"`
	Image   string            `json:"image"`
	Runtime string            `json:"runtime"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created,omitzero"`
}

func containersLsCommand(g *globals) *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list containers (filters as containerd's: image==..., labels.k==v)",
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), containersapi.NewContainersClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.List(ctx, &containersapi.ListContainersRequest{Filters: args})
			if err != nil {
				return err
			}
			rows := make([]containerRow, 0, len(resp.Containers))
			for _, ct := range resp.Containers {
				rows = append(rows, containerRow{ID: ct.ID, Image: ct.Image, Runtime: ct.Runtime.GetName(), Labels: ct.Labels, Created: protoconv.Time(ct.CreatedAt)})
			}
			return render(g.stdout, format, rows, []column[containerRow]{
				{"CONTAINER", func(r containerRow) string { return r.ID }},
				{"IMAGE", func(r containerRow) string { return r.Image }},
				{"RUNTIME", func(r containerRow) string { return r.Runtime }},
			}, quiet)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: table, json or a Go template")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the ids")
	return cmd
}

// containerInfo is what `containers info` prints: the record with the
// spec decoded.
type containerInfo struct {
	ID          string            `json:"ID"`
	Labels      map[string]string `json:"Labels,omitempty"`
	Image       string            `json:"Image"`
	Runtime     string            `json:"Runtime"`
	Snapshotter string            `json:"Snapshotter"`
	SnapshotKey string            `json:"SnapshotKey"`
	CreatedAt   time.Time         `json:"CreatedAt"`
	UpdatedAt   time.Time         `json:"UpdatedAt"`
	Spec        json.RawMessage   `json:"Spec,omitempty"`
}

func containersInfoCommand(g *globals) *cobra.Command {
	var specOnly bool
	cmd := &cobra.Command{
		Use:   "info ID",
		Short: "show a container's record and spec as JSON",
		Args:  exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), containersapi.NewContainersClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.Get(ctx, &containersapi.GetContainerRequest{ID: args[0]})
			if err != nil {
				return err
			}
			ct := resp.Container
			info := containerInfo{ID: ct.ID, Labels: ct.Labels, Image: ct.Image, Runtime: ct.Runtime.GetName(),
				Snapshotter: ct.Snapshotter, SnapshotKey: ct.SnapshotKey,
				CreatedAt: protoconv.Time(ct.CreatedAt), UpdatedAt: protoconv.Time(ct.UpdatedAt)}
			if v := ct.Spec.GetValue(); json.Valid(v) {
				info.Spec = v
			}
			if specOnly {
				return writeJSON(g.stdout, info.Spec)
			}
			return writeJSON(g.stdout, info)
		},
	}
	cmd.Flags().BoolVar(&specOnly, "spec", false, "print only the OCI spec")
	return cmd
}

func containersRmCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"delete", "remove"},
		Short:   "remove containers with their snapshots (a stopped task goes too)",
		Args:    minArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			return eachArgQuiet(g, args, func(id string) error {
				return removeContainer(ctx, c, id, force)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running task first")
	return cmd
}

// removeContainer deletes the container's task when it is stopped (or,
// forced, after killing it), then the record and its snapshot.
func removeContainer(ctx context.Context, c *Client, id string, force bool) error {
	cs := containersapi.NewContainersClient(c.Conn())
	got, err := cs.Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return err
	}
	if err := removeTask(ctx, c, id, force); err != nil {
		return err
	}
	if _, err := cs.Delete(ctx, &containersapi.DeleteContainerRequest{ID: id}); err != nil {
		return err
	}
	ct := got.Container
	if ct.SnapshotKey != "" && ct.Snapshotter != "" {
		_, err := snapshotsapi.NewSnapshotsClient(c.Conn()).Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Snapshotter: ct.Snapshotter, Key: ct.SnapshotKey})
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove snapshot %s: %w", ct.SnapshotKey, err)
		}
	}
	return nil
}

// removeTask deletes a container's task if it has one. A running task is
// an error unless force, which kills it and waits for its end.
func removeTask(ctx context.Context, c *Client, id string, force bool) error {
	ts := tasksapi.NewTasksClient(c.Conn())
	got, err := ts.Get(ctx, &tasksapi.GetRequest{ContainerID: id})
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	switch got.Process.Status {
	case tasktypes.Status_STOPPED, tasktypes.Status_CREATED, tasktypes.Status_UNKNOWN:
	default:
		if !force {
			return fmt.Errorf("cannot remove a container whose task is %s (stop it, or use --force): %w",
				strings.ToLower(got.Process.Status.String()), errdefs.ErrFailedPrecondition)
		}
		if got.Process.Status == tasktypes.Status_PAUSED {
			ts.Resume(ctx, &tasksapi.ResumeTaskRequest{ContainerID: id})
		}
		if _, err := ts.Kill(ctx, &tasksapi.KillRequest{ContainerID: id, Signal: 9, All: true}); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		if _, err := ts.Wait(ctx, &tasksapi.WaitRequest{ContainerID: id}); err != nil {
			return err
		}
	}
	_, err = ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: id})
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

func containersLabelCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "label ID KEY=VALUE...",
		Short: "set labels on a container (KEY= removes one)",
		Args:  minArgs(2, "ID KEY=VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			labels := map[string]string{}
			var paths []string
			for _, kv := range args[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageError("label %q is not KEY=VALUE", kv)
				}
				if v != "" {
					labels[k] = v
				}
				paths = append(paths, "labels."+k)
			}
			_, err = containersapi.NewContainersClient(c.Conn()).Update(ctx, &containersapi.UpdateContainerRequest{
				Container:  &containersapi.Container{ID: args[0], Labels: labels},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
			})
			return err
		},
	}
}

// rootfsMounts returns the mounts of a container's snapshot.
func rootfsMounts(ctx context.Context, c *Client, ct *containersapi.Container) ([]*types.Mount, error) {
	if ct.SnapshotKey == "" {
		return nil, nil
	}
	resp, err := snapshotsapi.NewSnapshotsClient(c.Conn()).Mounts(ctx, &snapshotsapi.MountsRequest{Snapshotter: ct.Snapshotter, Key: ct.SnapshotKey})
	if err != nil {
		return nil, fmt.Errorf("mounts of snapshot %s: %w", ct.SnapshotKey, err)
	}
	return resp.Mounts, nil
}
