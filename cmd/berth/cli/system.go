package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	systemapi "github.com/berthd/berth/proto/berth/system/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		sys := &cobra.Command{Use: "system", Short: "daemon-wide information", GroupID: "admin"}
		sys.AddCommand(infoCommand(g, ""), dfCommand(g))
		root.AddCommand(infoCommand(g, "admin"), sys)
	})
}

func infoCommand(g *globals, group string) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "info",
		Short:   "show information about berthd and the host",
		GroupID: group,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), systemapi.NewSystemClient)
			if err != nil {
				return err
			}
			defer cancel()
			info, err := client.Info(ctx, &systemapi.InfoRequest{})
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(g.stdout, info)
			}
			printInfo(g.stdout, info)
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json")
	return cmd
}

func printInfo(w io.Writer, i *systemapi.InfoResponse) {
	p := func(k string, v any) { fmt.Fprintf(w, " %s: %v\n", k, v) }
	fmt.Fprintln(w, "Server:")
	p("Containers", i.Containers)
	p("  Running", i.Running)
	p("  Paused", i.Paused)
	p("  Stopped", i.Stopped)
	p("Images", i.Images)
	p("Namespaces", i.Namespaces)
	p("Server Version", i.ServerVersion)
	p("Storage Driver", orDash(i.DefaultSnapshotter))
	p("Snapshotters", orDash(strings.Join(i.Snapshotters, " ")))
	p("Default Runtime", orDash(i.DefaultRuntime))
	p("Cgroup Driver", i.CgroupDriver)
	p("Cgroup Version", i.CgroupVersion)
	p("Plugins", fmt.Sprintf("%d ok, %d skipped, %d failed", i.Plugins.GetOk(), i.Plugins.GetSkipped(), i.Plugins.GetErrored()))
	p("Kernel Version", i.KernelVersion)
	p("Operating System", i.OperatingSystem)
	p("OSType", i.OsType)
	p("Architecture", i.Architecture)
	p("CPUs", i.Ncpu)
	p("Total Memory", humanBinarySize(i.MemTotal))
	p("ID", i.Uuid)
	p("Root Dir", i.RootDir)
	p("State Dir", i.StateDir)
	p("PID", i.Pid)
	if len(i.PerNamespace) > 0 {
		fmt.Fprintln(w, " Per Namespace:")
		for _, n := range i.PerNamespace {
			fmt.Fprintf(w, "  %s: %d images, %d containers (%d running)\n", n.Namespace, n.Images, n.Containers, n.Running)
		}
	}
	for _, warn := range i.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warn)
	}
}

// humanBinarySize renders bytes in binary units ("23.47GiB").
func humanBinarySize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}

type dfRow struct {
	Type        string `json:"type"`
	Total       int64  `json:"total"`
	Active      int64  `json:"active"`
	Size        int64  `json:"size"`
	Reclaimable int64  `json:"reclaimable"`
}

func dfCommand(g *globals) *cobra.Command {
	var format string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "df",
		Short: "show disk usage of images, containers and volumes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), systemapi.NewSystemClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.DiskUsage(ctx, &systemapi.DiskUsageRequest{Verbose: verbose})
			if err != nil {
				return err
			}
			var rows []dfRow
			for _, s := range resp.Summaries {
				rows = append(rows, dfRow{s.Type, s.Total, s.Active, s.Size, s.Reclaimable})
			}
			err = render(g.stdout, format, rows, []column[dfRow]{
				{"TYPE", func(r dfRow) string { return r.Type }},
				{"TOTAL", func(r dfRow) string { return fmt.Sprint(r.Total) }},
				{"ACTIVE", func(r dfRow) string { return fmt.Sprint(r.Active) }},
				{"SIZE", func(r dfRow) string { return humanSize(r.Size) }},
				{"RECLAIMABLE", func(r dfRow) string { return reclaimable(r) }},
			}, false)
			if err != nil || !verbose || format == "json" {
				return err
			}
			fmt.Fprintln(g.stdout)
			return render(g.stdout, "table", resp.Items, []column[*systemapi.UsageItem]{
				{"TYPE", func(i *systemapi.UsageItem) string { return i.Type }},
				{"NAMESPACE", func(i *systemapi.UsageItem) string { return i.Namespace }},
				{"NAME", func(i *systemapi.UsageItem) string { return i.Name }},
				{"SIZE", func(i *systemapi.UsageItem) string { return humanSize(i.Size) }},
				{"SHARED", func(i *systemapi.UsageItem) string { return humanSize(i.SharedSize) }},
				{"USERS", func(i *systemapi.UsageItem) string { return fmt.Sprint(i.Users) }},
			}, false)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every object")
	return cmd
}

func reclaimable(r dfRow) string {
	if r.Size == 0 {
		return humanSize(r.Reclaimable)
	}
	return fmt.Sprintf("%s (%d%%)", humanSize(r.Reclaimable), r.Reclaimable*100/r.Size)
}
