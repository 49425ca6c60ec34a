package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/core/oci"
	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(execCommand(g))
	})
}

func execCommand(g *globals) *cobra.Command {
	var interactive, tty, detach, privileged bool
	var env, envFiles []string
	var workdir, user string
	cmd := &cobra.Command{
		Use:     "exec [flags] CONTAINER COMMAND [ARG...]",
		Short:   "run a command in a running container; its exit code is berth's",
		GroupID: "containers",
		Args:    minArgs(2, "CONTAINER COMMAND"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tty && interactive && !detach && !isTerminal(g.stdin) {
				return usageError("the input device is not a TTY: drop -t, or run berth from a terminal")
			}
			var vars []string
			for _, name := range envFiles {
				v, err := oci.ReadEnvFile(name, os.LookupEnv)
				if err != nil {
					return usageError("--env-file %s: %v", name, cleanErr(err))
				}
				vars = append(vars, v...)
			}
			vars = append(vars, env...)
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			open := &containersapi.ExecOpen{
				Id: args[0], Args: args[1:], Env: vars, WorkingDir: workdir, User: user,
				Tty: tty, Stdin: interactive && !detach, Privileged: privileged, Detach: detach,
			}
			s, err := openExec(ctx, c, open, streamOptions{stdin: open.Stdin, tty: tty, sigProxy: true}, g)
			if err != nil {
				return containerError(err)
			}
			if err := s.waitAttached(); err != nil {
				s.close()
				var ns *errNotStarted
				if errors.As(err, &ns) {
					return &ExitError{Code: ns.code, Err: fmt.Errorf("exec: %s", ns.msg)}
				}
				return containerError(err)
			}
			if detach {
				s.close()
				return nil
			}
			code, err := s.run(ctx)
			if err != nil {
				return err
			}
			return containerExit(code)
		},
	}
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.BoolVarP(&interactive, "interactive", "i", false, "keep stdin open")
	fl.BoolVarP(&tty, "tty", "t", false, "give the command a terminal")
	fl.BoolVarP(&detach, "detach", "d", false, "start the command and return at once")
	fl.BoolVar(&privileged, "privileged", false, "give the command every capability")
	fl.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE")
	fl.StringArrayVar(&envFiles, "env-file", nil, "file of environment variables")
	fl.StringVarP(&workdir, "workdir", "w", "", "working directory")
	fl.StringVarP(&user, "user", "u", "", "user[:group] to run as")
	return cmd
}
