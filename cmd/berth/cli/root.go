// Package cli implements the berth command line.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/internal/version"
)

// Environment variables the CLI reads.
const (
	EnvAddress     = "BERTH_ADDRESS"
	DefaultAddress = "/run/berth/berth.sock"
)

// globals are the flags every command has.
type globals struct {
	address   string
	namespace string
	timeout   time.Duration
	debug     bool

	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	client *Client
}

// ExitError ends the program with a specific exit code, after printing its
// message (if any).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Main runs the CLI with args and returns the process exit code.
func Main(args []string) int {
	g := &globals{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	root := newRoot(g)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if g.client != nil {
		g.client.Close()
	}
	if err == nil {
		return 0
	}
	code := 1
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
		if ee.Err == nil {
			return code
		}
	}
	fmt.Fprintf(g.stderr, "berth: %s\n", describe(err, g.address))
	return code
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "berth",
		Short:         "berth: containers for one host, Docker-style, on berthd",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Global flags before the command name are berth's own, so a
		// command may use their shorthands for its flags (ps -a, start -a)
		// while `berth -a SOCKET ps -a` still works.
		TraverseChildren: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.namespace == "" {
				return errors.New("--namespace must not be empty")
			}
			return nil
		},
	}
	root.SetVersionTemplate("berth {{.Version}}\n")
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &ExitError{Code: 125, Err: fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
	})
	address := os.Getenv(EnvAddress)
	if address == "" {
		address = DefaultAddress
	}
	fl := root.PersistentFlags()
	fl.StringVarP(&g.address, "address", "a", address, "berthd socket (env "+EnvAddress+")")
	fl.StringVarP(&g.namespace, "namespace", "n", namespaces.FromEnv(), "namespace to work in (env "+namespaces.EnvVar+")")
	fl.DurationVar(&g.timeout, "timeout", 0, "give up on berthd calls after this long (0 = no limit)")
	fl.BoolVar(&g.debug, "debug", false, "print debug details of errors")

	root.AddGroup(&cobra.Group{ID: "containers", Title: "Containers:"},
		&cobra.Group{ID: "images", Title: "Images:"},
		&cobra.Group{ID: "admin", Title: "Administration:"})
	for _, add := range commandSets {
		add(root, g)
	}
	return root
}

// commandSets are the functions that add commands to the root; each file
// of this package registers its own in an init function.
var commandSets []func(root *cobra.Command, g *globals)

func addCommands(f func(root *cobra.Command, g *globals)) {
	commandSets = append(commandSets, f)
}

// describe turns an error into the one line the user sees.
func describe(err error, address string) string {
	msg := err.Error()
	if isConnectError(err) {
		return fmt.Sprintf("cannot connect to berthd at %s: is it running? (%s)", address, msg)
	}
	return strings.TrimSpace(msg)
}
