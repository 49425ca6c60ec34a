package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"

	volumesapi "github.com/berthd/berth/proto/berth/volumes/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(volumeCommand(g))
	})
}

// volumeRow is how the CLI shows a volume; templates use its field names
// ({{.Name}}, {{.Mountpoint}}), JSON its tags.
type volumeRow struct {
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Scope      string            `json:"scope"`
	Mountpoint string            `json:"mountpoint"`
	CreatedAt  time.Time         `json:"created_at"`
	Labels     map[string]string `json:"labels"`
	Options    map[string]string `json:"options"`
	Anonymous  bool              `json:"anonymous"`
	Containers []string          `json:"containers"`
}

func toVolumeRow(v *volumesapi.Volume) volumeRow {
	r := volumeRow{
		Name: v.Name, Driver: v.Driver, Scope: "local", Mountpoint: v.Mountpoint,
		CreatedAt: v.CreatedAt.AsTime(), Labels: v.Labels, Options: v.Options,
		Anonymous: v.Anonymous, Containers: v.Containers,
	}
	// Empty collections print as {} and [], not null.
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	if r.Options == nil {
		r.Options = map[string]string{}
	}
	if r.Containers == nil {
		r.Containers = []string{}
	}
	return r
}

func volumeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Aliases: []string{"volumes"}, Short: "manage volumes", GroupID: "containers"}
	cmd.AddCommand(volumeCreateCommand(g), volumeLsCommand(g), volumeInspectCommand(g),
		volumeRmCommand(g), volumePruneCommand(g))
	return cmd
}

func volumeCreateCommand(g *globals) *cobra.Command {
	var driver, format string
	var labels, opts []string
	cmd := &cobra.Command{
		Use:   "create [NAME]",
		Short: "create a volume (a random name when none is given) and print its name",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError("%q takes at most one argument: NAME (see '%s --help')", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			lbls, err := parseLabels(labels)
			if err != nil {
				return err
			}
			options, err := parseDriverOptions(opts)
			if err != nil {
				return err
			}
			vc, ctx, cancel, err := connectAPI(g, cmd.Context(), volumesapi.NewVolumesClient)
			if err != nil {
				return err
			}
			defer cancel()
			req := &volumesapi.CreateVolumeRequest{Driver: driver, Labels: lbls, Options: options}
			if len(args) == 1 {
				req.Name = args[0]
			}
			resp, err := vc.Create(ctx, req)
			if errors.Is(err, errdefs.ErrAlreadyExists) {
				resp, err = existingVolume(ctx, vc, req, err)
			}
			if err != nil {
				return err
			}
			return printCreated(g, format, resp.Volume.Name, toVolumeRow(resp.Volume))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&driver, "driver", "d", "local", "volume driver")
	fl.StringArrayVarP(&labels, "label", "l", nil, "label to set (K=V), repeatable")
	fl.StringArrayVarP(&opts, "opt", "o", nil, "driver option (K=V), repeatable: type=tmpfs, device=tmpfs, o=size=64m, or type=none, o=bind, device=/path")
	fl.StringVar(&format, "format", "", "print the volume as json or through a Go template instead of its name")
	return cmd
}

// existingVolume makes create idempotent as docker's is: creating a
// volume that exists with the same driver returns it (its labels and
// options stay as they are); with another driver it is an error.
func existingVolume(ctx context.Context, vc volumesapi.VolumesClient, req *volumesapi.CreateVolumeRequest, exists error) (*volumesapi.CreateVolumeResponse, error) {
	got, err := vc.Get(ctx, &volumesapi.GetVolumeRequest{Name: req.Name})
	if err != nil {
		return nil, exists
	}
	if got.Volume.Driver != req.Driver {
		return nil, fmt.Errorf("volume %q already exists with driver %q, not %q: %w", req.Name, got.Volume.Driver, req.Driver, errdefs.ErrAlreadyExists)
	}
	return &volumesapi.CreateVolumeResponse{Volume: got.Volume}, nil
}

// parseDriverOptions turns ["k=v"] into a map; unlike labels a value is required.
func parseDriverOptions(args []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usageError("option %q is not KEY=VALUE", a)
		}
		out[k] = v
	}
	return out, nil
}

func volumeLsCommand(g *globals) *cobra.Command {
	var format string
	var quiet bool
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "list volumes (filters: dangling=true|false, name=PART, label=K[=V], driver=D)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vc, ctx, cancel, err := connectAPI(g, cmd.Context(), volumesapi.NewVolumesClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := vc.List(ctx, &volumesapi.ListVolumesRequest{Filters: filters})
			if err != nil {
				return err
			}
			var rows []volumeRow
			for _, v := range resp.Volumes {
				rows = append(rows, toVolumeRow(v))
			}
			name := column[volumeRow]{"VOLUME NAME", func(r volumeRow) string { return r.Name }}
			if quiet {
				return render(g.stdout, format, rows, []column[volumeRow]{name}, true)
			}
			return render(g.stdout, format, rows, []column[volumeRow]{
				{"DRIVER", func(r volumeRow) string { return r.Driver }},
				name,
			}, false)
		},
	}
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "show only volumes matching K=V (repeatable)")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only names")
	return cmd
}

func volumeInspectCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect NAME...",
		Short: "show volumes in detail (JSON by default)",
		Args:  minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			vc, ctx, cancel, err := connectAPI(g, cmd.Context(), volumesapi.NewVolumesClient)
			if err != nil {
				return err
			}
			defer cancel()
			rows, failed := collectEach(g, args, func(name string) (volumeRow, error) {
				resp, err := vc.Get(ctx, &volumesapi.GetVolumeRequest{Name: name})
				if err != nil {
					return volumeRow{}, err
				}
				return toVolumeRow(resp.Volume), nil
			})
			return renderObjects(g, format, rows, failed)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "output format: json or a Go template")
	return cmd
}

func volumeRmCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "remove volumes and their data (in use: refused unless --force; never while a user runs)",
		Args:    minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			vc, ctx, cancel, err := connectAPI(g, cmd.Context(), volumesapi.NewVolumesClient)
			if err != nil {
				return err
			}
			defer cancel()
			return eachArg(g, args, func(name string) error {
				_, err := vc.Remove(ctx, &volumesapi.RemoveVolumeRequest{Name: name, Force: force})
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove volumes used by stopped containers too")
	return cmd
}

type volumePruneResult struct {
	Deleted        []string `json:"deleted"`
	SpaceReclaimed int64    `json:"space_reclaimed"`
}

func volumePruneCommand(g *globals) *cobra.Command {
	var all, force bool
	var filters []string
	var format string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "remove unused anonymous volumes (with --all, every unused volume)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force && !confirmPrune(g, prunedVolumes(all)) {
				return nil
			}
			vc, ctx, cancel, err := connectAPI(g, cmd.Context(), volumesapi.NewVolumesClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := vc.Prune(ctx, &volumesapi.PruneVolumesRequest{All: all, Filters: filters})
			if err != nil {
				return err
			}
			res := volumePruneResult{Deleted: resp.Deleted, SpaceReclaimed: resp.SpaceReclaimed}
			if res.Deleted == nil {
				res.Deleted = []string{}
			}
			if format != "" {
				return renderObject(g, format, res)
			}
			printPruneReport(g.stdout, "Volumes", res.Deleted, res.SpaceReclaimed)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&all, "all", false, "remove every unused volume, named ones too (-a is --address)")
	fl.BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	fl.StringArrayVar(&filters, "filter", nil, "prune only volumes matching K=V (label=, name=, driver=)")
	fl.StringVar(&format, "format", "", "print the result as json or through a Go template")
	return cmd
}

// prunedVolumes names, for the prune warning, the volumes a prune takes.
func prunedVolumes(all bool) string {
	if all {
		return "all local volumes"
	}
	return "anonymous local volumes"
}
