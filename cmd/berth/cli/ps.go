package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(psCommand(g))
	})
}

// psRow is one container as `berth ps` shows it; --format templates and
// JSON see these fields.
type psRow struct {
	ID           string            `json:"ID"`
	FullID       string            `json:"FullID"`
	Names        string            `json:"Names"`
	Image        string            `json:"Image"`
	ImageID      string            `json:"ImageID"`
	Command      string            `json:"Command"`
	CreatedAt    time.Time         `json:"CreatedAt"`
	RunningFor   string            `json:"RunningFor"`
	Status       string            `json:"Status"`
	State        string            `json:"State"`
	ExitCode     int               `json:"ExitCode"`
	Ports        string            `json:"Ports"`
	Labels       map[string]string `json:"Labels,omitempty"`
	Size         string            `json:"Size,omitempty"`
	RestartCount int               `json:"RestartCount"`
}

func psCommand(g *globals) *cobra.Command {
	var all, quiet, noTrunc, size, latest bool
	var filters []string
	var format string
	var last int
	cmd := &cobra.Command{
		Use:     "ps [flags]",
		Short:   "list containers (running ones unless -a)",
		GroupID: "containers",
		Args:    exactArgs(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if latest {
				last = 1
			}
			resp, err := containersClient(c).List(ctx, &containersapi.ListRequest{All: all || last > 0, Filters: filters, Size: size})
			if err != nil {
				return err
			}
			list := resp.Containers
			if last > 0 && len(list) > last {
				list = list[:last]
			}
			rows := make([]psRow, 0, len(list))
			for _, ct := range list {
				rows = append(rows, newPSRow(ct, noTrunc, size))
			}
			id := func(r psRow) string { return r.ID }
			if noTrunc {
				id = func(r psRow) string { return r.FullID }
			}
			if quiet {
				return render(g.stdout, "", rows, []column[psRow]{{"", id}}, true)
			}
			cols := []column[psRow]{
				{"CONTAINER ID", id},
				{"IMAGE", func(r psRow) string { return r.Image }},
				{"COMMAND", func(r psRow) string { return r.Command }},
				{"CREATED", func(r psRow) string { return r.RunningFor }},
				{"STATUS", func(r psRow) string { return r.Status }},
				{"PORTS", func(r psRow) string { return r.Ports }},
				{"NAMES", func(r psRow) string { return r.Names }},
			}
			if size {
				cols = append(cols, column[psRow]{"SIZE", func(r psRow) string { return r.Size }})
			}
			return render(g.stdout, format, rows, cols, false)
		},
	}
	freeAddressShorthand(cmd, g)
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "show every container, not only running ones")
	fl.BoolVarP(&quiet, "quiet", "q", false, "print only container ids")
	fl.BoolVar(&noTrunc, "no-trunc", false, "do not shorten ids and commands")
	fl.BoolVarP(&size, "size", "s", false, "show the writable layers' sizes")
	fl.BoolVarP(&latest, "latest", "l", false, "show the newest container")
	fl.IntVar(&last, "last", 0, "show the n newest containers")
	fl.StringArrayVarP(&filters, "filter", "f", nil, "filter: status=, name=, id=, label=K[=V], ancestor=IMAGE, exited=CODE")
	fl.StringVar(&format, "format", "table", "output format: table, json or a Go template such as '{{.ID}}'")
	return cmd
}

func newPSRow(c *containersapi.Container, noTrunc, size bool) psRow {
	r := psRow{
		ID: shortID(c.Id), FullID: c.Id, Names: c.Name, ImageID: c.ImageId,
		Labels: c.Labels, State: c.State.GetStatus(), ExitCode: int(c.State.GetExitCode()),
		RestartCount: int(c.RestartCount), Ports: formatPorts(c.Ports),
	}
	repo, tag := familiar(c.Image)
	r.Image = repo
	if tag != "latest" && tag != "<none>" {
		r.Image += ":" + tag
	}
	if c.Created != nil {
		r.CreatedAt = c.Created.AsTime()
		r.RunningFor = ago(r.CreatedAt)
	}
	r.Command = quoteCommand(c.Command, noTrunc)
	r.Status = statusText(c.State)
	if size {
		r.Size = humanSize(c.SizeRw)
	}
	return r
}

// quoteCommand renders a command as docker ps does: quoted, shortened to
// 20 characters unless noTrunc.
func quoteCommand(args []string, noTrunc bool) string {
	cmd := strings.Join(args, " ")
	if !noTrunc && len(cmd) > 20 {
		cmd = cmd[:19] + "…"
	}
	return strconv.Quote(cmd)
}

// statusText is docker's STATUS column: "Up 3 minutes", "Up 2 seconds
// (Paused)", "Exited (137) 2 minutes ago", "Created", "Restarting (1) 3
// seconds ago".
func statusText(s *containersapi.State) string {
	switch s.GetStatus() {
	case "running":
		return "Up " + humanDuration(time.Since(s.StartedAt.AsTime()))
	case "paused":
		return "Up " + humanDuration(time.Since(s.StartedAt.AsTime())) + " (Paused)"
	case "restarting":
		return fmt.Sprintf("Restarting (%d) %s", s.ExitCode, ago(s.FinishedAt.AsTime()))
	case "exited":
		return fmt.Sprintf("Exited (%d) %s", s.ExitCode, ago(s.FinishedAt.AsTime()))
	case "created":
		return "Created"
	case "":
		return "Unknown"
	}
	return strings.ToUpper(s.GetStatus()[:1]) + s.GetStatus()[1:]
}

// formatPorts renders published ports as docker does ("0.0.0.0:8080->80/tcp").
func formatPorts(ports []*containersapi.Port) string {
	var out []string
	for _, p := range ports {
		ip := p.HostIp
		if ip == "" {
			ip = "0.0.0.0"
		}
		out = append(out, fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.ContainerPort, p.Protocol))
	}
	return strings.Join(out, ", ")
}
