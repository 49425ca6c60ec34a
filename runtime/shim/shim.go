// Package shim is berth-shim-runc-v2: a containerd shim v2 binary that
// runs containers with runc (or any runtime with runc's command line, such
// as crun).
//
// The daemon runs it as containerd runs a shim, with the bundle as working
// directory:
//
//	berth-shim-runc-v2 -namespace NS -id ID -address DAEMON_SOCKET \
//	    -publish-binary PATH [-debug] start|delete
//
// start spawns the long-lived shim (same binary, no action, in its own
// session), waits until it serves, writes the address and shim.pid files in
// the bundle and prints the address. delete cleans up after a shim that is
// gone and prints a protobuf DeleteResponse. Without an action the binary is
// the long-lived shim itself, serving containerd.task.v2.Task over ttrpc on
// the listener inherited as fd 3. With the action spare, berthd starts it
// before it knows the container (see package spare).
package shim

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/berthd/berth/runtime/shim/spare"
)

// Environment the daemon sets, as containerd does.
const (
	// EnvTTRPCAddress is the daemon's ttrpc socket, where events go.
	EnvTTRPCAddress = "TTRPC_ADDRESS"
	// EnvGRPCAddress is the daemon's gRPC socket (informational).
	EnvGRPCAddress = "GRPC_ADDRESS"
	// EnvNamespace is the namespace, when -namespace is not given.
	EnvNamespace = "NAMESPACE"
)

// Version is reported by -v.
var Version = "dev"

type flags struct {
	namespace     string
	id            string
	address       string
	publishBinary string
	bundle        string
	debug         bool
	version       bool
	action        string
}

func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("berth-shim-runc-v2", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.namespace, "namespace", "", "namespace of the container")
	fs.StringVar(&f.id, "id", "", "id of the container")
	fs.StringVar(&f.address, "address", "", "daemon's gRPC socket")
	fs.StringVar(&f.publishBinary, "publish-binary", "", "ignored; events go to $TTRPC_ADDRESS")
	fs.StringVar(&f.bundle, "bundle", "", "bundle directory (default: working directory)")
	fs.BoolVar(&f.debug, "debug", false, "log debug messages")
	fs.BoolVar(&f.version, "v", false, "print the version and exit")
	// containerd 1.7 passes -socket to shims it re-execs; berth does not,
	// but accept it so a shim started that way fails on fd 3, not on flags.
	fs.String("socket", "", "ignored")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	f.action = fs.Arg(0)
	if f.namespace == "" {
		f.namespace = os.Getenv(EnvNamespace)
	}
	return f, nil
}

// Run is the shim's main function; it returns the process exit code.
func Run(args []string) int {
	f, err := parseFlags(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim-runc-v2: %v\n", err)
		return 2
	}
	if f.version {
		fmt.Printf("berth-shim-runc-v2 %s\n", Version)
		return 0
	}
	if f.action == spare.Action {
		// The namespace, id and bundle come later, on the control socket.
		if err := serveSpare(f); err != nil {
			fmt.Fprintf(os.Stderr, "berth-shim-runc-v2: spare: %v\n", err)
			return 1
		}
		return 0
	}
	if f.namespace == "" || f.id == "" {
		fmt.Fprintln(os.Stderr, "berth-shim-runc-v2: -namespace and -id are required")
		return 2
	}
	if f.bundle == "" {
		if f.bundle, err = os.Getwd(); err != nil {
			fmt.Fprintf(os.Stderr, "berth-shim-runc-v2: working directory: %v\n", err)
			return 1
		}
	}
	switch f.action {
	case "start":
		err = start(f)
	case "delete":
		err = deleteBundle(f)
	case "":
		err = serve(f)
	default:
		err = fmt.Errorf("unknown action %q (want start or delete)", f.action)
	}
	if err != nil {
		if f.action == "" {
			slog.Error("shim failed", "id", f.id, "error", err)
		}
		fmt.Fprintf(os.Stderr, "berth-shim-runc-v2: %s: %v\n", actionName(f.action), err)
		return 1
	}
	return 0
}

func actionName(a string) string {
	if a == "" {
		return "serve"
	}
	return a
}

func stderrLogger(debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
