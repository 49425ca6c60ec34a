package cli

import (
	"os"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(exportCommand(g))
	})
}

func exportCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "export [flags] CONTAINER",
		Short:   "write a container's filesystem as a tar (to stdout unless -o)",
		GroupID: "containers",
		Args:    exactArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := g.stdout
			if output == "" && isTerminal(g.stdout) {
				return usageError("refusing to write a tar to a terminal: use -o FILE or redirect stdout")
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			st, err := containersClient(c).Export(ctx, &containersapi.ContainerRequest{Id: args[0]})
			if err != nil {
				return containerError(err)
			}
			var f *os.File
			if output != "" {
				if f, err = os.CreateTemp(dirOf(output), ".berth-export-*"); err != nil {
					return err
				}
				defer os.Remove(f.Name())
				defer f.Close()
				out = f
			}
			err = recvEach(st, func(m *containersapi.Chunk) error {
				_, err := out.Write(m.Data)
				return err
			})
			if err != nil {
				return containerError(err)
			}
			if f != nil {
				if err := f.Close(); err != nil {
					return err
				}
				return os.Rename(f.Name(), output)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	return cmd
}
