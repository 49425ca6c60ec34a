package cli

import (
	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

// networkConnectCommand joins a container to a network: at once when it
// runs, and at each of its starts.
func networkConnectCommand(g *globals) *cobra.Command {
	var aliases []string
	cmd := &cobra.Command{
		Use:   "connect [--alias NAME] NETWORK CONTAINER",
		Short: "connect a container to a network",
		Args:  exactArgs(2, "NETWORK CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			_, err = containersClient(c).Connect(ctx, &containersapi.ConnectRequest{Network: args[0], Id: args[1], Aliases: aliases})
			return containerError(err)
		},
	}
	cmd.Flags().StringArrayVar(&aliases, "alias", nil, "another name of the container on this network")
	return cmd
}

// networkDisconnectCommand takes a container off a network.
func networkDisconnectCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "disconnect [-f] NETWORK CONTAINER",
		Short: "disconnect a container from a network",
		Args:  exactArgs(2, "NETWORK CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			_, err = containersClient(c).Disconnect(ctx, &containersapi.DisconnectRequest{Network: args[0], Id: args[1], Force: force})
			return containerError(err)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "also drop a network that no longer exists")
	return cmd
}
