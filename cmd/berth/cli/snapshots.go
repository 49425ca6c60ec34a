package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	introspection "github.com/containerd/containerd/api/services/introspection/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthd/berth/internal/protoconv"
)

// EnvSnapshotter chooses the snapshotter of `berth snapshots` commands
// when --snapshotter is not given.
const EnvSnapshotter = "BERTH_SNAPSHOTTER"

// labelDefaultSnapshotter on a namespace names its default snapshotter,
// containerd's convention.
const labelDefaultSnapshotter = "containerd.io/defaults/snapshotter"

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(snapshotsCommand(g))
	})
}

// snapshotsCLI holds the state shared by the snapshots subcommands.
type snapshotsCLI struct {
	g           *globals
	snapshotter string
}

func snapshotsCommand(g *globals) *cobra.Command {
	s := &snapshotsCLI{g: g}
	cmd := &cobra.Command{
		Use:     "snapshots",
		Aliases: []string{"snapshot"},
		Short:   "manage snapshots (image layers and container filesystems)",
		GroupID: "admin",
	}
	cmd.PersistentFlags().StringVar(&s.snapshotter, "snapshotter", os.Getenv(EnvSnapshotter),
		"snapshotter (env "+EnvSnapshotter+"; default: the namespace's, else berthd's)")
	cmd.AddCommand(s.lsCommand(), s.treeCommand(), s.infoCommand(), s.mountsCommand(), s.usageCommand(),
		s.rmCommand(), s.prepareCommand(), s.viewCommand(), s.commitCommand(), s.labelCommand())
	return cmd
}

// connect dials berthd and resolves the snapshotter name.
func (s *snapshotsCLI) connect(cmd *cobra.Command) (snapshotsapi.SnapshotsClient, context.Context, context.CancelFunc, error) {
	c, ctx, cancel, err := s.g.connect(cmd.Context())
	if err != nil {
		return nil, nil, nil, err
	}
	if s.snapshotter == "" {
		if s.snapshotter, err = defaultSnapshotter(ctx, c); err != nil {
			cancel()
			return nil, nil, nil, err
		}
	}
	return snapshotsapi.NewSnapshotsClient(c.Conn()), ctx, cancel, nil
}

// defaultSnapshotter is the namespace's containerd.io/defaults/snapshotter
// label, else the default berthd reports through introspection.
func defaultSnapshotter(ctx context.Context, c *Client) (string, error) {
	ns, err := namespacesapi.NewNamespacesClient(c.Conn()).Get(ctx, &namespacesapi.GetNamespaceRequest{Name: c.Namespace()})
	if err == nil && ns.Namespace.Labels[labelDefaultSnapshotter] != "" {
		return ns.Namespace.Labels[labelDefaultSnapshotter], nil
	}
	resp, err := introspection.NewIntrospectionClient(c.Conn()).Plugins(ctx, &introspection.PluginsRequest{
		Filters: []string{`type==io.berth.internal.v1,id==defaults`},
	})
	if err != nil {
		return "", err
	}
	for _, p := range resp.Plugins {
		if name := p.Exports["default_snapshotter"]; name != "" {
			return name, nil
		}
	}
	return "overlayfs", nil
}

type snapshotRow struct {
	Kind    string            `json:"kind"`
	Name    string            `json:"name"`
	Parent  string            `json:"parent,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
}

func toSnapshotRow(i *snapshotsapi.Info) snapshotRow {
	info := protoconv.SnapshotInfoFromProto(i)
	return snapshotRow{Kind: info.Kind.String(), Name: info.Name, Parent: info.Parent, Labels: info.Labels, Created: info.Created, Updated: info.Updated}
}

// list returns the snapshots matching filters, sorted by name.
func list(ctx context.Context, client snapshotsapi.SnapshotsClient, snapshotter string, filters []string) ([]snapshotRow, error) {
	stream, err := client.List(ctx, &snapshotsapi.ListSnapshotsRequest{Snapshotter: snapshotter, Filters: filters})
	if err != nil {
		return nil, err
	}
	var rows []snapshotRow
	err = recvEach(stream, func(resp *snapshotsapi.ListSnapshotsResponse) error {
		for _, i := range resp.Info {
			rows = append(rows, toSnapshotRow(i))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows, nil
}

func (s *snapshotsCLI) lsCommand() *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list snapshots (filters: name==, parent==, kind==, labels.K==)",
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := s.connect(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			rows, err := list(ctx, client, s.snapshotter, args)
			if err != nil {
				return err
			}
			return render(s.g.stdout, format, rows, []column[snapshotRow]{
				{"KEY", func(r snapshotRow) string { return r.Name }},
				{"PARENT", func(r snapshotRow) string { return orDash(r.Parent) }},
				{"KIND", func(r snapshotRow) string { return r.Kind }},
				{"AGE", func(r snapshotRow) string { return ago(r.Created) }},
			}, quiet)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only keys")
	return cmd
}

func (s *snapshotsCLI) treeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "tree",
		Short: "show snapshots as a tree of parents and children",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, ctx, cancel, err := s.connect(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			rows, err := list(ctx, client, s.snapshotter, nil)
			if err != nil {
				return err
			}
			printTree(s.g.stdout, rows)
			return nil
		},
	}
}

// printTree prints each snapshot under its parent, children sorted,
// roots (and snapshots whose parent is not listed) at the left.
func printTree(w io.Writer, rows []snapshotRow) {
	known := map[string]bool{}
	children := map[string][]string{}
	for _, r := range rows {
		known[r.Name] = true
	}
	var roots []string
	for _, r := range rows {
		if r.Parent == "" || !known[r.Parent] {
			roots = append(roots, r.Name)
			continue
		}
		children[r.Parent] = append(children[r.Parent], r.Name)
	}
	var walk func(name string, depth int)
	walk = func(name string, depth int) {
		prefix := strings.Repeat("  ", depth)
		if depth > 0 {
			prefix += "\\_"
		}
		fmt.Fprintf(w, "%s %s\n", prefix, name)
		for _, c := range children[name] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}

func (s *snapshotsCLI) infoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "info KEY",
		Short: "print a snapshot's kind, parent, labels and times as JSON",
		Args:  exactArgs(1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := s.connect(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Snapshotter: s.snapshotter, Key: args[0]})
			if err != nil {
				return err
			}
			return writeJSON(s.g.stdout, toSnapshotRow(resp.Info))
		},
	}
}

// printMounts prints the shell commands that mount mounts on target.
func printMounts(w io.Writer, target string, mounts []*types.Mount) {
	for _, m := range mounts {
		dest := target
		if m.Target != "" {
			dest = strings.TrimSuffix(target, "/") + "/" + strings.TrimPrefix(m.Target, "/")
		}
		line := fmt.Sprintf("mount -t %s %s %s", m.Type, m.Source, dest)
		if len(m.Options) > 0 {
			line += " -o " + strings.Join(m.Options, ",")
		}
		fmt.Fprintln(w, line)
	}
}

func (s *snapshotsCLI) mountsCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "mounts TARGET KEY",
		Aliases: []string{"mount", "m"},
		Short:   "print the mount commands of an active or view snapshot",
		Args:    exactArgs(2, "TARGET KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := s.connect(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.Mounts(ctx, &snapshotsapi.MountsRequest{Snapshotter: s.snapshotter, Key: args[1]})
			if err != nil {
				return err
			}
			printMounts(s.g.stdout, args[0], resp.Mounts)
			return nil
		},
	}
}

type usageRow struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	Inodes int64  `json:"inodes"`
}

func (s *snapshotsCLI) usageCommand() *cobra.Command {
	var format string
	var bytes bool
	cmd := &cobra.Command{
		Use:   "usage [KEY...]",
		Short: "show the disk each snapshot uses on its own (all snapshots when no key is given)",
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := s.connect(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			keys := args
			if len(keys) == 0 {
				rows, err := list(ctx, client, s.snapshotter, nil)
				if err != nil {
					return err
				}
				for _, r := range rows {
					keys = append(keys, r.Name)
				}
			}
			var rows []usageRow
			for _, k := range keys {
				u, err := client.Usage(ctx, &snapshotsapi.UsageRequest{Snapshotter: s.snapshotter, Key: k})
				if err != nil {
					return err
				}
				rows = append(rows, usageRow{Key: k, Size: u.Size, Inodes: u.Inodes})
			}
			size := humanSize
			if bytes {
				size = func(n int64) string { return fmt.Sprint(n) }
			}
			return render(s.g.stdout, format, rows, []column[usageRow]{
				{"KEY", func(r usageRow) string { return r.Key }},
				{"SIZE", func(r usageRow) string { return size(r.Size) }},
				{"INODES", func(r usageRow) string { return fmt.Sprint(r.Inodes) }},
			}, false)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	cmd.Flags().BoolVarP(&bytes, "bytes", "b", false, "print sizes in bytes")
	return cmd
}

func (s *snapshotsCLI) rmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm KEY...",
		Aliases: []string{"remove", "delete", "del"},
		Short:   "remove snapshots (a snapshot with children cannot be removed)",
		Args:    minArgs(1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := s.connect(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			return eachArg(s.g, args, func(k string) error {
				_, err := client.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Snapshotter: s.snapshotter, Key: k})
				return err
			})
		},
	}
}

// createFlags are the flags of prepare and view.
type createFlags struct {
	target string
	labels []string
}

func (f *createFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.target, "target", "", "print the commands that mount the snapshot on this folder")
	cmd.Flags().StringArrayVarP(&f.labels, "label", "l", nil, "label to set (K=V), repeatable")
}

// create is the body of prepare, view and commit: create makes the
// snapshot with the labels of --label, and its mounts print when --target
// is given (commit has no --target).
func (s *snapshotsCLI) create(cmd *cobra.Command, f *createFlags,
	create func(ctx context.Context, client snapshotsapi.SnapshotsClient, labels map[string]string) ([]*types.Mount, error)) error {
	lbls, err := parseLabels(f.labels)
	if err != nil {
		return err
	}
	client, ctx, cancel, err := s.connect(cmd)
	if err != nil {
		return err
	}
	defer cancel()
	mounts, err := create(ctx, client, lbls)
	if err != nil {
		return err
	}
	if f.target != "" {
		printMounts(s.g.stdout, f.target, mounts)
	}
	return nil
}

func (s *snapshotsCLI) prepareCommand() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "prepare KEY [PARENT]",
		Short: "create a writable snapshot on a committed parent (or empty)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError("%q needs a KEY and optionally a PARENT (see '%s --help')", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			parent := ""
			if len(args) == 2 {
				parent = args[1]
			}
			return s.create(cmd, &f, func(ctx context.Context, client snapshotsapi.SnapshotsClient, labels map[string]string) ([]*types.Mount, error) {
				resp, err := client.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Snapshotter: s.snapshotter, Key: args[0], Parent: parent, Labels: labels})
				return resp.GetMounts(), err
			})
		},
	}
	f.add(cmd)
	return cmd
}

func (s *snapshotsCLI) viewCommand() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "view KEY PARENT",
		Short: "create a read-only snapshot of a committed parent",
		Args:  exactArgs(2, "KEY PARENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.create(cmd, &f, func(ctx context.Context, client snapshotsapi.SnapshotsClient, labels map[string]string) ([]*types.Mount, error) {
				resp, err := client.View(ctx, &snapshotsapi.ViewSnapshotRequest{Snapshotter: s.snapshotter, Key: args[0], Parent: args[1], Labels: labels})
				return resp.GetMounts(), err
			})
		},
	}
	f.add(cmd)
	return cmd
}

func (s *snapshotsCLI) commitCommand() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "commit NAME KEY",
		Short: "commit the active snapshot KEY as the read-only snapshot NAME",
		Args:  exactArgs(2, "NAME KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.create(cmd, &f, func(ctx context.Context, client snapshotsapi.SnapshotsClient, labels map[string]string) ([]*types.Mount, error) {
				_, err := client.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Snapshotter: s.snapshotter, Name: args[0], Key: args[1], Labels: labels})
				return nil, err
			})
		},
	}
	cmd.Flags().StringArrayVarP(&f.labels, "label", "l", nil, "label to set (K=V), repeatable")
	return cmd
}

func (s *snapshotsCLI) labelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "label KEY [K=V...]",
		Short: "set labels on a snapshot (K= removes K); with no labels, print them",
		Args:  minArgs(1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := s.connect(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			return printOrSetLabels(s.g, args, func(key string) (map[string]string, error) {
				resp, err := client.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Snapshotter: s.snapshotter, Key: key})
				return resp.GetInfo().GetLabels(), err
			}, func(key string, labels map[string]string, mask *fieldmaskpb.FieldMask) error {
				_, err := client.Update(ctx, &snapshotsapi.UpdateSnapshotRequest{
					Snapshotter: s.snapshotter, Info: &snapshotsapi.Info{Name: key, Labels: labels}, UpdateMask: mask,
				})
				return err
			})
		},
	}
}
