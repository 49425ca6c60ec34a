package cli

import (
	"fmt"
	"strings"

	introspection "github.com/containerd/containerd/api/services/introspection/v1"
	nsapi "github.com/containerd/containerd/api/services/namespaces/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthd/berth/internal/version"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(versionCommand(g), pluginsCommand(g), namespacesCommand(g))
	})
}

func versionCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "show the client's and berthd's versions",
		GroupID: "admin",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			type side struct {
				Version  string `json:"version"`
				Revision string `json:"revision"`
			}
			out := struct {
				Client side  `json:"client"`
				Server *side `json:"server,omitempty"`
			}{Client: side{version.Version, version.Revision}}
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), versionapi.NewVersionClient)
			if err != nil {
				return err
			}
			defer cancel()
			v, serr := client.Version(ctx, &emptypb.Empty{})
			if serr == nil {
				out.Server = &side{v.Version, v.Revision}
			}
			if format == "json" {
				if err := writeJSON(g.stdout, out); err != nil {
					return err
				}
				return serr
			}
			fmt.Fprintf(g.stdout, "Client:\n  Version:  %s\n  Revision: %s\n", out.Client.Version, out.Client.Revision)
			if serr != nil {
				return serr
			}
			fmt.Fprintf(g.stdout, "Server:\n  Version:  %s\n  Revision: %s\n", out.Server.Version, out.Server.Revision)
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	return cmd
}

type pluginRow struct {
	Type         string            `json:"type"`
	ID           string            `json:"id"`
	Platforms    []string          `json:"platforms,omitempty"`
	Status       string            `json:"status"`
	Error        string            `json:"error,omitempty"`
	Requires     []string          `json:"requires,omitempty"`
	Exports      map[string]string `json:"exports,omitempty"`
	Capabilities []string          `json:"capabilities,omitempty"`
}

func pluginsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "plugins",
		Short:   "list berthd's plugins",
		GroupID: "admin",
	}
	var format string
	var detailed bool
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list plugins with their status (filters: type==..., id==...)",
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), introspection.NewIntrospectionClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.Plugins(ctx, &introspection.PluginsRequest{Filters: args})
			if err != nil {
				return err
			}
			var rows []pluginRow
			for _, p := range resp.Plugins {
				rows = append(rows, toPluginRow(p))
			}
			cols := []column[pluginRow]{
				{"TYPE", func(r pluginRow) string { return r.Type }},
				{"ID", func(r pluginRow) string { return r.ID }},
				{"PLATFORMS", func(r pluginRow) string { return orDash(strings.Join(r.Platforms, ",")) }},
				{"STATUS", func(r pluginRow) string { return r.Status }},
			}
			if detailed {
				cols = append(cols, column[pluginRow]{"DETAIL", func(r pluginRow) string { return r.Error }})
			}
			return render(g.stdout, format, rows, cols, false)
		},
	}
	ls.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	ls.Flags().BoolVarP(&detailed, "detailed", "d", false, "show why plugins were skipped or failed")
	cmd.AddCommand(ls)
	return cmd
}

func toPluginRow(p *introspection.Plugin) pluginRow {
	r := pluginRow{Type: p.Type, ID: p.ID, Status: "ok", Requires: p.Requires, Exports: p.Exports, Capabilities: p.Capabilities}
	for _, pl := range p.Platforms {
		s := pl.OS + "/" + pl.Architecture
		if pl.Variant != "" {
			s += "/" + pl.Variant
		}
		r.Platforms = append(r.Platforms, s)
	}
	if p.InitErr != nil {
		r.Status = "error"
		if p.InitErr.Code == int32(code.Code_FAILED_PRECONDITION) {
			r.Status = "skip"
		}
		r.Error = p.InitErr.Message
	}
	return r
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type namespaceRow struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

func namespacesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "namespaces",
		Aliases: []string{"namespace", "ns"},
		Short:   "manage namespaces",
		GroupID: "admin",
	}
	var createLabels []string
	create := &cobra.Command{
		Use:   "create NAME [--label K=V...]",
		Short: "create a namespace",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			lbls, err := parseLabels(createLabels)
			if err != nil {
				return err
			}
			nc, ctx, cancel, err := connectAPI(g, cmd.Context(), nsapi.NewNamespacesClient)
			if err != nil {
				return err
			}
			defer cancel()
			_, err = nc.Create(ctx, &nsapi.CreateNamespaceRequest{Namespace: &nsapi.Namespace{Name: args[0], Labels: lbls}})
			return err
		},
	}
	create.Flags().StringArrayVarP(&createLabels, "label", "l", nil, "label to set (K=V), repeatable")

	var format string
	var quiet bool
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "list namespaces",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, ctx, cancel, err := connectAPI(g, cmd.Context(), nsapi.NewNamespacesClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := nc.List(ctx, &nsapi.ListNamespacesRequest{})
			if err != nil {
				return err
			}
			var rows []namespaceRow
			for _, n := range resp.Namespaces {
				rows = append(rows, namespaceRow{Name: n.Name, Labels: n.Labels})
			}
			return render(g.stdout, format, rows, []column[namespaceRow]{
				{"NAME", func(r namespaceRow) string { return r.Name }},
				{"LABELS", func(r namespaceRow) string { return labelString(r.Labels) }},
			}, quiet)
		},
	}
	ls.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only names")

	rm := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove empty namespaces",
		Args:    minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, ctx, cancel, err := connectAPI(g, cmd.Context(), nsapi.NewNamespacesClient)
			if err != nil {
				return err
			}
			defer cancel()
			return eachArg(g, args, func(n string) error {
				_, err := nc.Delete(ctx, &nsapi.DeleteNamespaceRequest{Name: n})
				return err
			})
		},
	}

	label := &cobra.Command{
		Use:   "label NAME [K=V...]",
		Short: "set labels on a namespace (K= removes K); with no labels, print them",
		Args:  minArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, ctx, cancel, err := connectAPI(g, cmd.Context(), nsapi.NewNamespacesClient)
			if err != nil {
				return err
			}
			defer cancel()
			return printOrSetLabels(g, args, func(name string) (map[string]string, error) {
				resp, err := nc.Get(ctx, &nsapi.GetNamespaceRequest{Name: name})
				return resp.GetNamespace().GetLabels(), err
			}, func(name string, labels map[string]string, mask *fieldmaskpb.FieldMask) error {
				_, err := nc.Update(ctx, &nsapi.UpdateNamespaceRequest{Namespace: &nsapi.Namespace{Name: name, Labels: labels}, UpdateMask: mask})
				return err
			})
		},
	}
	cmd.AddCommand(create, ls, rm, label)
	return cmd
}

// exactArgs requires n arguments, naming them in the error.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError("%q needs exactly %d argument(s): %s (see '%s --help')", cmd.CommandPath(), n, names, cmd.CommandPath())
		}
		return nil
	}
}

// minArgs requires at least n arguments.
func minArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageError("%q needs at least %d argument(s): %s (see '%s --help')", cmd.CommandPath(), n, names, cmd.CommandPath())
		}
		return nil
	}
}
