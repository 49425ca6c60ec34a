package cli

import (
	"context"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(stopCommand(g, "stop"), stopCommand(g, "restart"), killCommand(g))
	})
}

// stopCommand is `stop` or `restart`: both send the stop signal, then
// SIGKILL after the timeout.
func stopCommand(g *globals, use string) *cobra.Command {
	var timeout int
	var signal string
	short := "stop running containers: the stop signal, then SIGKILL after the timeout"
	if use == "restart" {
		short = "stop (if running) and start containers again"
	}
	cmd := &cobra.Command{
		Use:     use + " [flags] CONTAINER...",
		Short:   short,
		GroupID: "containers",
		Args:    minArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < -1 {
				return usageError("invalid value %d for --time: want seconds >= 0", timeout)
			}
			return eachContainer(g, func(ctx context.Context, api containersapi.ContainersClient, ref string) error {
				req := &containersapi.StopRequest{Id: ref, Timeout: int32(timeout), Signal: signal}
				var err error
				if use == "restart" {
					_, err = api.Restart(ctx, req)
				} else {
					_, err = api.Stop(ctx, req)
				}
				return err
			})(cmd, args)
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", -1, "seconds to wait before SIGKILL (default: the container's, 10)")
	cmd.Flags().StringVarP(&signal, "signal", "s", "", "signal to send first (default: the container's stop signal)")
	return cmd
}

func killCommand(g *globals) *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:     "kill [flags] CONTAINER...",
		Short:   "send a signal (default SIGKILL) to running containers",
		GroupID: "containers",
		Args:    minArgs(1, "CONTAINER"),
		RunE: eachContainer(g, func(ctx context.Context, api containersapi.ContainersClient, ref string) error {
			_, err := api.Kill(ctx, &containersapi.KillRequest{Id: ref, Signal: signal})
			return err
		}),
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "signal to send, by name or number")
	return cmd
}
