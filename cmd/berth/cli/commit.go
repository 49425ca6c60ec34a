package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(commitCommand(g))
	})
}

func commitCommand(g *globals) *cobra.Command {
	var message, author string
	var changes []string
	var pause bool
	cmd := &cobra.Command{
		Use:     "commit [flags] CONTAINER NEWIMAGE[:TAG]",
		Short:   "make an image of a container's changes, on top of its image",
		GroupID: "containers",
		Args:    exactArgs(2, "CONTAINER NEWIMAGE[:TAG]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			full, err := normalizeImage(args[1])
			if err != nil {
				return err
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := containersClient(c).Commit(ctx, &containersapi.CommitRequest{
				Id: args[0], Reference: full, Message: message, Author: author, Changes: changes, NoPause: !pause,
			})
			if err != nil {
				return containerError(err)
			}
			fmt.Fprintln(g.stdout, resp.Id)
			return nil
		},
	}
	freeAddressShorthand(cmd, g)
	fl := cmd.Flags()
	fl.StringVarP(&message, "message", "m", "", "commit message (in the image history)")
	fl.StringVarP(&author, "author", "a", "", "author, e.g. \"Jane <jane@example.com>\"")
	fl.StringArrayVarP(&changes, "change", "c", nil, "Dockerfile instruction to apply: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL, VOLUME")
	fl.BoolVarP(&pause, "pause", "p", true, "pause a running container while its changes are read")
	return cmd
}
