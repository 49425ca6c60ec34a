package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(waitCommand(g))
	})
}

func waitCommand(g *globals) *cobra.Command {
	var condition string
	cmd := &cobra.Command{
		Use:     "wait [flags] CONTAINER...",
		Short:   "wait until containers stop and print their exit codes",
		GroupID: "containers",
		Args:    minArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			failed := false
			for _, ref := range args {
				resp, err := containersClient(c).Wait(ctx, &containersapi.WaitRequest{Id: ref, Condition: condition})
				if err != nil {
					fmt.Fprintf(g.stderr, "berth: %s\n", describe(containerError(err), g.address))
					failed = true
					continue
				}
				fmt.Fprintln(g.stdout, resp.ExitCode)
			}
			if failed {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&condition, "condition", "not-running", "wait until: not-running, next-exit or removed")
	return cmd
}
