package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(statsCommand(g))
	})
}

// statsRow is one container's line of `berth stats`.
type statsRow struct {
	ID         string  `json:"ID"`
	Name       string  `json:"Name"`
	CPUPerc    string  `json:"CPUPerc"`
	CPUPercent float64 `json:"CPUPercent"`
	MemUsage   string  `json:"MemUsage"`
	MemPerc    string  `json:"MemPerc"`
	MemBytes   uint64  `json:"MemBytes"`
	MemLimit   uint64  `json:"MemLimit"`
	NetIO      string  `json:"NetIO"`
	BlockIO    string  `json:"BlockIO"`
	PIDs       uint64  `json:"PIDs"`
}

func statsCommand(g *globals) *cobra.Command {
	var noStream, all bool
	var format string
	cmd := &cobra.Command{
		Use:     "stats [flags] [CONTAINER...]",
		Short:   "show running containers' CPU, memory, network, block I/O and pids, live",
		GroupID: "containers",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			st, err := containersClient(c).Stats(ctx, &containersapi.StatsRequest{Ids: args, Stream: !noStream})
			if err != nil {
				return containerError(err)
			}
			clear := !noStream && isTerminal(g.stdout) && format == "table"
			return containerError(recvEach(st, func(resp *containersapi.StatsResponse) error {
				if clear {
					// Redraw in place: cursor home, clear screen.
					fmt.Fprint(g.stdout, "\033[H\033[2J")
				}
				return printStats(g, resp.Stats, format)
			}))
		},
	}
	freeAddressShorthand(cmd, g)
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "accepted for docker compatibility: stopped containers have nothing to show")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	return cmd
}

func printStats(g *globals, stats []*containersapi.Stats, format string) error {
	rows := make([]statsRow, 0, len(stats))
	for _, s := range stats {
		r := statsRow{
			ID: shortID(s.Id), Name: s.Name, CPUPercent: s.CpuPercent, CPUPerc: fmt.Sprintf("%.2f%%", s.CpuPercent),
			MemBytes: s.MemoryUsage, MemLimit: s.MemoryLimit, PIDs: s.Pids,
			MemUsage: humanBinary(s.MemoryUsage) + " / " + humanBinary(s.MemoryLimit),
			NetIO:    humanSize(int64(s.NetRx)) + " / " + humanSize(int64(s.NetTx)),
			BlockIO:  humanSize(int64(s.BlockRead)) + " / " + humanSize(int64(s.BlockWrite)),
			MemPerc:  "0.00%",
		}
		if s.MemoryLimit > 0 {
			r.MemPerc = fmt.Sprintf("%.2f%%", float64(s.MemoryUsage)/float64(s.MemoryLimit)*100)
		}
		rows = append(rows, r)
	}
	return render(g.stdout, format, rows, []column[statsRow]{
		{"CONTAINER ID", func(r statsRow) string { return r.ID }},
		{"NAME", func(r statsRow) string { return r.Name }},
		{"CPU %", func(r statsRow) string { return r.CPUPerc }},
		{"MEM USAGE / LIMIT", func(r statsRow) string { return r.MemUsage }},
		{"MEM %", func(r statsRow) string { return r.MemPerc }},
		{"NET I/O", func(r statsRow) string { return r.NetIO }},
		{"BLOCK I/O", func(r statsRow) string { return r.BlockIO }},
		{"PIDS", func(r statsRow) string { return fmt.Sprint(r.PIDs) }},
	}, false)
}

// humanBinary renders bytes in binary units as docker stats does
// ("1.5MiB").
func humanBinary(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}
