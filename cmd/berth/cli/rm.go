package cli

import (
	"context"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(rmCommand(g))
		// `berth container prune` joins the containers command group
		// (whose other commands are ctr-style).
		var parent *cobra.Command
		for _, c := range root.Commands() {
			if c.Name() == "containers" {
				parent = c
			}
		}
		if parent == nil {
			parent = &cobra.Command{Use: "containers", Aliases: []string{"container"}, Short: "manage containers", GroupID: "admin"}
			root.AddCommand(parent)
		}
		parent.AddCommand(pruneCommand(g))
	})
}

func rmCommand(g *globals) *cobra.Command {
	var force, volumes bool
	cmd := &cobra.Command{
		Use:     "rm [flags] CONTAINER...",
		Short:   "remove containers with their writable layer and logs",
		GroupID: "containers",
		Args:    minArgs(1, "CONTAINER"),
		RunE: eachContainer(g, func(ctx context.Context, api containersapi.ContainersClient, ref string) error {
			_, err := api.Remove(ctx, &containersapi.RemoveRequest{Id: ref, Force: force, Volumes: volumes})
			return err
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill running containers first")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "remove the containers' anonymous volumes too")
	return cmd
}

func pruneCommand(g *globals) *cobra.Command {
	var filters []string
	var force bool
	cmd := &cobra.Command{
		Use:   "prune [flags]",
		Short: "remove every stopped container",
		Args:  exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := containersClient(c).Prune(ctx, &containersapi.PruneRequest{Filters: filters})
			if err != nil {
				return err
			}
			printPruneReport(g.stdout, "Containers", resp.Removed, resp.Reclaimed)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "only containers matching (label=K[=V], name=, ancestor=, exited=)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation (berth never asks)")
	return cmd
}
