package cli

import (
	"fmt"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthd/berth/core/leases"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(contentCommand(g), leasesCommand(g))
	})
}

type contentRow struct {
	Digest    string            `json:"digest"`
	Size      int64             `json:"size"`
	CreatedAt time.Time         `json:"created_at"`
	Labels    map[string]string `json:"labels,omitempty"`
}

func contentCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "content", Short: "manage blobs in the content store", GroupID: "admin"}
	var format string
	var quiet bool
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list blobs (filters: digest==, size==, labels.K==)",
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), contentapi.NewContentClient)
			if err != nil {
				return err
			}
			defer cancel()
			stream, err := client.List(ctx, &contentapi.ListContentRequest{Filters: args})
			if err != nil {
				return err
			}
			var rows []contentRow
			err = recvEach(stream, func(resp *contentapi.ListContentResponse) error {
				for _, i := range resp.Info {
					rows = append(rows, contentRow{i.Digest, i.Size, i.CreatedAt.AsTime(), i.Labels})
				}
				return nil
			})
			if err != nil {
				return err
			}
			return render(g.stdout, format, rows, []column[contentRow]{
				{"DIGEST", func(r contentRow) string { return r.Digest }},
				{"SIZE", func(r contentRow) string { return humanSize(r.Size) }},
				{"AGE", func(r contentRow) string { return ago(r.CreatedAt) }},
				{"LABELS", func(r contentRow) string { return orDash(labelString(r.Labels)) }},
			}, quiet)
		},
	}
	ls.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only digests")

	get := &cobra.Command{
		Use:   "get DIGEST",
		Short: "write a blob to stdout",
		Args:  exactArgs(1, "DIGEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), contentapi.NewContentClient)
			if err != nil {
				return err
			}
			defer cancel()
			stream, err := client.Read(ctx, &contentapi.ReadContentRequest{Digest: args[0]})
			if err != nil {
				return err
			}
			return recvEach(stream, func(resp *contentapi.ReadContentResponse) error {
				_, err := g.stdout.Write(resp.Data)
				return err
			})
		},
	}

	rm := &cobra.Command{
		Use:     "rm DIGEST...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove blobs from the namespace",
		Args:    minArgs(1, "DIGEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), contentapi.NewContentClient)
			if err != nil {
				return err
			}
			defer cancel()
			return eachArg(g, args, func(d string) error {
				_, err := client.Delete(ctx, &contentapi.DeleteContentRequest{Digest: d})
				return err
			})
		},
	}

	label := &cobra.Command{
		Use:   "label DIGEST [K=V...]",
		Short: "set labels on a blob (K= removes K); with no labels, print them",
		Args:  minArgs(1, "DIGEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), contentapi.NewContentClient)
			if err != nil {
				return err
			}
			defer cancel()
			return printOrSetLabels(g, args, func(d string) (map[string]string, error) {
				resp, err := client.Info(ctx, &contentapi.InfoRequest{Digest: d})
				return resp.GetInfo().GetLabels(), err
			}, func(d string, labels map[string]string, mask *fieldmaskpb.FieldMask) error {
				_, err := client.Update(ctx, &contentapi.UpdateRequest{Info: &contentapi.Info{Digest: d, Labels: labels}, UpdateMask: mask})
				return err
			})
		},
	}
	cmd.AddCommand(ls, get, rm, label)
	return cmd
}

type leaseRow struct {
	ID        string            `json:"id"`
	CreatedAt time.Time         `json:"created_at"`
	Labels    map[string]string `json:"labels,omitempty"`
}

func leasesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "leases", Aliases: []string{"lease"}, Short: "manage leases that keep content from garbage collection", GroupID: "admin"}
	var format string
	var quiet bool
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list leases",
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), leasesapi.NewLeasesClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.List(ctx, &leasesapi.ListRequest{Filters: args})
			if err != nil {
				return err
			}
			var rows []leaseRow
			for _, l := range resp.Leases {
				rows = append(rows, leaseRow{l.ID, l.CreatedAt.AsTime(), l.Labels})
			}
			return render(g.stdout, format, rows, []column[leaseRow]{
				{"ID", func(r leaseRow) string { return r.ID }},
				{"CREATED", func(r leaseRow) string { return ago(r.CreatedAt) }},
				{"LABELS", func(r leaseRow) string { return orDash(labelString(r.Labels)) }},
			}, quiet)
		},
	}
	ls.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only ids")

	var id string
	var expire time.Duration
	var createLabels []string
	create := &cobra.Command{
		Use:   "create [--id ID] [--expire 24h] [--label K=V]",
		Short: "create a lease and print its id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lbls, err := parseLabels(createLabels)
			if err != nil {
				return err
			}
			if expire > 0 {
				lbls[leases.LabelExpire] = time.Now().Add(expire).UTC().Format(time.RFC3339)
			}
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), leasesapi.NewLeasesClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.Create(ctx, &leasesapi.CreateRequest{ID: id, Labels: lbls})
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, resp.Lease.ID)
			return nil
		},
	}
	create.Flags().StringVar(&id, "id", "", "lease id (random when empty)")
	create.Flags().DurationVar(&expire, "expire", 0, "expire the lease after this long (0 = never)")
	create.Flags().StringArrayVarP(&createLabels, "label", "l", nil, "label to set (K=V), repeatable")

	var sync bool
	rm := &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove leases",
		Args:    minArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), leasesapi.NewLeasesClient)
			if err != nil {
				return err
			}
			defer cancel()
			return eachArg(g, args, func(id string) error {
				_, err := client.Delete(ctx, &leasesapi.DeleteRequest{ID: id, Sync: sync})
				return err
			})
		},
	}
	rm.Flags().BoolVar(&sync, "sync", false, "wait for garbage collection before returning")
	cmd.AddCommand(ls, create, rm)
	return cmd
}
