package cli

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(logsCommand(g))
	})
}

func logsCommand(g *globals) *cobra.Command {
	var follow, timestamps bool
	var tail, since, until string
	cmd := &cobra.Command{
		Use:     "logs [flags] CONTAINER",
		Short:   "print a container's output (kept by berthd, also after it exited)",
		GroupID: "containers",
		Args:    exactArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &containersapi.LogsRequest{Id: args[0], Follow: follow, Tail: -1}
			if tail != "all" && tail != "" {
				n, err := strconv.ParseInt(tail, 10, 64)
				if err != nil || n < 0 {
					return usageError("invalid value %q for --tail: want a number of lines or all", tail)
				}
				req.Tail = n
			}
			now := time.Now()
			for _, t := range []struct {
				flag, value string
				dst         **timestamppb.Timestamp
			}{{"--since", since, &req.Since}, {"--until", until, &req.Until}} {
				if t.value == "" {
					continue
				}
				at, err := parseTimeArg(t.value, now)
				if err != nil {
					return usageError("invalid value %q for %s: %v", t.value, t.flag, err)
				}
				*t.dst = timestamppb.New(at)
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			st, err := containersClient(c).Logs(ctx, req)
			if err != nil {
				return containerError(err)
			}
			w := newLogWriter(g, timestamps)
			return containerError(recvEach(st, w.write))
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new output until the container stops")
	fl.BoolVarP(&timestamps, "timestamps", "t", false, "prefix each line with its time")
	fl.StringVar(&tail, "tail", "all", "number of lines from the end to show")
	fl.StringVar(&since, "since", "", "show output since a time (RFC 3339, Unix seconds) or a duration ago (10m)")
	fl.StringVar(&until, "until", "", "show output until a time or a duration ago")
	return cmd
}

// parseTimeArg reads docker's time arguments: a duration before now
// ("10m", "1h30m"), Unix seconds (with fractions), or RFC 3339 (with or
// without a zone, date alone too).
func parseTimeArg(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("want a duration (10m), Unix seconds or an RFC 3339 time")
}

// logWriter prints entries to stdout or stderr by stream; with
// timestamps, each line starts with its entry's time (a line written in
// pieces gets the time of its first piece).
type logWriter struct {
	g          *globals
	timestamps bool
	midLine    map[string]bool
}

func newLogWriter(g *globals, timestamps bool) *logWriter {
	return &logWriter{g: g, timestamps: timestamps, midLine: map[string]bool{}}
}

func (w *logWriter) write(e *containersapi.LogEntry) error {
	out := w.g.stdout
	if e.Stream == "stderr" {
		out = w.g.stderr
	}
	data := e.Data
	if w.timestamps && !w.midLine[e.Stream] {
		data = append([]byte(e.Time.AsTime().UTC().Format(time.RFC3339Nano)+" "), data...)
	}
	w.midLine[e.Stream] = !strings.HasSuffix(string(e.Data), "\n")
	_, err := out.Write(data)
	return err
}
