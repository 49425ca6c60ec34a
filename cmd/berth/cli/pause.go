package cli

import (
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
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			api := containersClient(c)
			return forEach(g, args, func(ref string) error {
				req := &containersapi.ContainerRequest{Id: ref}
				var err error
				if pause {
					_, err = api.Pause(ctx, req)
				} else {
					_, err = api.Unpause(ctx, req)
				}
				return err
			})
		},
	}
}
