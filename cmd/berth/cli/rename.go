package cli

import (
	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(&cobra.Command{
			Use:     "rename CONTAINER NEW_NAME",
			Short:   "rename a container",
			GroupID: "containers",
			Args:    exactArgs(2, "CONTAINER NEW_NAME"),
			RunE: func(cmd *cobra.Command, args []string) error {
				if !validName(args[1]) {
					return usageError("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least two characters", args[1])
				}
				c, ctx, cancel, err := g.connect(cmd.Context())
				if err != nil {
					return err
				}
				defer cancel()
				_, err = containersClient(c).Rename(ctx, &containersapi.RenameRequest{Id: args[0], Name: args[1]})
				return containerError(err)
			},
		})
	})
}
