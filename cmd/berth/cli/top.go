package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(topCommand(g))
	})
}

func topCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "top CONTAINER [ps OPTIONS]",
		Short:   "list a running container's processes (ps -ef unless options are given)",
		GroupID: "containers",
		Args:    minArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := containersClient(c).Top(ctx, &containersapi.TopRequest{Id: args[0], PsArgs: args[1:]})
			if err != nil {
				return containerError(err)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, strings.Join(resp.Titles, "\t"))
			for _, p := range resp.Processes {
				fmt.Fprintln(tw, strings.Join(p.Fields, "\t"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}
