package cli

import (
	"context"
	"errors"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func containersClient(c *Client) containersapi.ContainersClient {
	return containersapi.NewContainersClient(c.Conn())
}

// inspectContainer returns container ref's details.
func inspectContainer(ctx context.Context, c *Client, ref string) (*containersapi.Container, error) {
	resp, err := containersClient(c).Inspect(ctx, &containersapi.ContainerRequest{Id: ref})
	if err != nil {
		return nil, containerError(err)
	}
	return resp.Container, nil
}

// containerError makes berthd's errors read as one plain sentence (the
// error class suffix goes) and adds what to do next to errors users meet
// often. The class stays available to errors.Is.
func containerError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrFailedPrecondition, errdefs.ErrInvalidArgument, errdefs.ErrAlreadyExists, errdefs.ErrUnavailable} {
		if errors.Is(err, class) {
			msg = strings.TrimSuffix(msg, ": "+class.Error())
			if errdefs.IsNotFound(err) && strings.HasPrefix(msg, "no such container") {
				msg += " (see 'berth ps -a')"
			}
			return &plainError{msg: msg, err: err}
		}
	}
	return err
}

// plainError shows msg and unwraps to the original error.
type plainError struct {
	msg string
	err error
}

func (e *plainError) Error() string { return e.msg }
func (e *plainError) Unwrap() error { return e.err }

// forEach runs fn for each container named, printing each name that
// succeeded (as docker does) and the errors of the others; the result
// fails when any failed.
func forEach(g *globals, refs []string, fn func(ref string) error) error {
	return eachArg(g, refs, func(ref string) error { return containerError(fn(ref)) })
}

// eachContainer is the RunE of the commands that make one call for each
// container named (rm, kill, stop, pause, ...): it connects to berthd
// and runs call through forEach.
func eachContainer(g *globals, call func(ctx context.Context, api containersapi.ContainersClient, ref string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		api, ctx, cancel, err := connectAPI(g, cmd.Context(), containersapi.NewContainersClient)
		if err != nil {
			return err
		}
		defer cancel()
		return forEach(g, args, func(ref string) error { return call(ctx, api, ref) })
	}
}

// freeAddressShorthand lets cmd use -a for its own flag, as docker's
// commands do (ps -a, start -a, cp -a): a hidden local --address flag on
// the same variable takes the place of the global one, whose -a
// shorthand would otherwise clash. --address keeps working.
func freeAddressShorthand(cmd *cobra.Command, g *globals) {
	cmd.Flags().StringVar(&g.address, "address", g.address, "berthd socket")
	_ = cmd.Flags().MarkHidden("address")
}
