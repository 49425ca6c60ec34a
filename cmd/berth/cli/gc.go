package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	systemapi "github.com/berthd/berth/proto/berth/system/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(gcCommand(g))
	})
}

func gcCommand(g *globals) *cobra.Command {
	var format string
	var verbose bool
	cmd := &cobra.Command{
		Use:     "gc",
		Short:   "collect garbage now: remove content and snapshots nothing references",
		GroupID: "admin",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), systemapi.NewSystemClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.GarbageCollect(ctx, &systemapi.GarbageCollectRequest{})
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(g.stdout, resp)
			}
			fmt.Fprintf(g.stdout, "Removed %d records, %d blobs, %d snapshots, %d uploads; reclaimed %s in %s (writers paused %s)\n",
				len(resp.Records), len(resp.Blobs), len(resp.Snapshots), len(resp.Ingests), humanSize(resp.Reclaimed),
				time.Duration(resp.ElapsedNs).Round(time.Microsecond), time.Duration(resp.PauseNs).Round(time.Microsecond))
			if verbose {
				for _, group := range [][]string{resp.Records, resp.Blobs, resp.Snapshots, resp.Ingests} {
					for _, item := range group {
						fmt.Fprintln(g.stdout, "  "+item)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list what was removed")
	return cmd
}
