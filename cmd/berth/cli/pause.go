package cli

import (
	"context"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(pauseCommand(g, true), pauseCommand(g, false))
	})
}

func pauseCommand(g *globals, pause bool) *cobra.Command {
	use, short := "pause", "freeze every process of running containers"
	if !pause {
		use, short = "unpause", "thaw paused containers"
	}
	return &cobra.Command{
		Use:     use + " CONTAINER...",
		Short:   short,
		GroupID: "containers",
		Args:    minArgs(1, "CONTAINER"),
		RunE: eachContainer(g, func(ctx context.Context, api containersapi.ContainersClient, ref string) error {
			req := &containersapi.ContainerRequest{Id: ref}
			var err error
			if pause {
				_, err = api.Pause(ctx, req)
			} else {
				_, err = api.Unpause(ctx, req)
			}
			return err
		}),
	}
}
