package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(&cobra.Command{
			Use:     "diff CONTAINER",
			Short:   "list the files a container added (A), changed (C) or deleted (D)",
			GroupID: "containers",
			Args:    exactArgs(1, "CONTAINER"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, ctx, cancel, err := g.connect(cmd.Context())
				if err != nil {
					return err
				}
				defer cancel()
				resp, err := containersClient(c).Diff(ctx, &containersapi.ContainerRequest{Id: args[0]})
				if err != nil {
					return containerError(err)
				}
				for _, ch := range resp.Changes {
					fmt.Fprintf(g.stdout, "%s %s\n", ch.Kind, ch.Path)
				}
				return nil
			},
		})
	})
}
