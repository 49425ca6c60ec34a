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
			// Each exit code prints as soon as its container stops.
			return reportEach(g, args, func(ref string) (string, error) {
				resp, err := containersClient(c).Wait(ctx, &containersapi.WaitRequest{Id: ref, Condition: condition})
				if err != nil {
					return "", containerError(err)
				}
				return fmt.Sprint(resp.ExitCode), nil
			})
		},
	}
	cmd.Flags().StringVar(&condition, "condition", "not-running", "wait until: not-running, next-exit or removed")
	return cmd
}
