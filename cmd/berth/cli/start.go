package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(startCommand(g))
	})
}

func startCommand(g *globals) *cobra.Command {
	var attach, interactive bool
	cmd := &cobra.Command{
		Use:     "start [flags] CONTAINER...",
		Short:   "start stopped containers (their writable layer as it was left)",
		GroupID: "containers",
		Args:    minArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if attach || interactive {
				if len(args) != 1 {
					return usageError("you cannot start and attach to more than one container at once")
				}
				return startAttached(ctx, c, g, args[0], interactive)
			}
			return forEach(g, args, func(ref string) error {
				_, err := containersClient(c).Start(ctx, &containersapi.StartRequest{Id: ref})
				return err
			})
		},
	}
	freeAddressShorthand(cmd, g)
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach to the output and wait for the exit")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach the container's stdin")
	return cmd
}

// startAttached attaches to a container, then starts it, and returns its
// exit code as the command's.
func startAttached(ctx context.Context, c *Client, g *globals, ref string, interactive bool) error {
	info, err := inspectContainer(ctx, c, ref)
	if err != nil {
		return err
	}
	if info.State.GetRunning() {
		return fmt.Errorf("container %s is already running: use 'berth attach'", ref)
	}
	tty := info.Config.GetTty()
	stdin := interactive && info.Config.GetOpenStdin()
	if tty && stdin && !isTerminal(g.stdin) {
		return usageError("the input device is not a TTY: drop -i, or run berth from a terminal")
	}
	s, err := openAttach(ctx, c, info.Id, streamOptions{stdin: stdin, tty: tty, sigProxy: true}, g)
	if err != nil {
		return err
	}
	if err := startOrExplain(ctx, c, info.Id, false); err != nil {
		s.close()
		return err
	}
	code, err := s.run(ctx)
	if err != nil {
		return err
	}
	return containerExit(code)
}
