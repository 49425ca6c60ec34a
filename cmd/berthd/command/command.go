// Package command is berthd's command line: the daemon itself and its
// helper subcommands.
package command

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/cmd/berthd/server"
	"github.com/berthd/berth/internal/version"
	_ "github.com/berthd/berth/plugins/builtins"
)

type flags struct {
	config   string
	root     string
	state    string
	address  string
	logLevel string
}

// New returns the berthd root command.
func New() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:           "berthd",
		Short:         "berth daemon: images, snapshots and containers for one host",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			return run(cfg, f.config)
		},
	}
	cmd.SetVersionTemplate("berthd {{.Version}}\n")
	fl := cmd.PersistentFlags()
	fl.StringVarP(&f.config, "config", "c", server.DefaultConfigPath, "path to the configuration file")
	fl.StringVar(&f.root, "root", "", "persistent data folder (default from config: "+server.DefaultRoot+")")
	fl.StringVar(&f.state, "state", "", "runtime state folder (default from config: "+server.DefaultState+")")
	fl.StringVarP(&f.address, "address", "a", "", "gRPC socket (default from config: "+server.DefaultAddress+")")
	fl.StringVarP(&f.logLevel, "log-level", "l", "", "log level: debug, info, warn, error")
	cmd.AddCommand(configCommand(f), publishCommand(f))
	return cmd
}

// load reads the config file and applies the flags over it.
func (f *flags) load(cmd *cobra.Command) (*server.Config, error) {
	cfg, err := server.LoadConfig(f.config, cmd.Flags().Changed("config"))
	if err != nil {
		return nil, err
	}
	if f.root != "" {
		cfg.Root = f.root
	}
	if f.state != "" {
		cfg.State = f.state
	}
	if f.address != "" {
		cfg.GRPC.Address = f.address
	}
	if f.logLevel != "" {
		cfg.Debug.Level = f.logLevel
	}
	return cfg, cfg.Validate()
}

func setupLogging(cfg *server.Config) {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Debug.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.Debug.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	slog.SetDefault(slog.New(h))
}

func run(cfg *server.Config, configPath string) error {
	setupLogging(cfg)
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	srv, err := server.New(ctx, cfg, configPath)
	if err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		srv.Stop()
		return err
	}
	slog.Info("berthd ready", "version", version.Version, "pid", os.Getpid(), "took", time.Since(start))
	<-ctx.Done()
	slog.Info("stopping berthd")
	srv.Stop()
	return nil
}

func configCommand(f *flags) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "work with berthd's configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "print the full default configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := server.DefaultConfig().Marshal()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}, &cobra.Command{
		Use:   "dump",
		Short: "print the configuration berthd would run with (file and flags applied)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			out, err := cfg.Marshal()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	})
	return cmd
}
