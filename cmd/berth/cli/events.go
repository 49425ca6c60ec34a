package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	_ "github.com/containerd/containerd/api/events" // event types, for decoding
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(eventsCommand(g))
	})
}

// eventLine is one event as `events --format json` prints it.
type eventLine struct {
	Timestamp time.Time       `json:"timestamp"`
	Namespace string          `json:"namespace"`
	Topic     string          `json:"topic"`
	Event     json.RawMessage `json:"event,omitempty"`
}

func eventsCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "events [FILTER...]",
		Short:   "stream events as they happen (filters as containerd's: topic==/tasks/exit, namespace==web, event.container_id==x)",
		GroupID: "admin",
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "" && format != "json" {
				return usageError("--format %q: use json", format)
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			// Every namespace unless the user narrows it with a filter,
			// as ctr events does.
			stream, err := eventsapi.NewEventsClient(c.Conn()).Subscribe(ctx, &eventsapi.SubscribeRequest{Filters: args})
			if err != nil {
				return err
			}
			for {
				env, err := stream.Recv()
				if err == io.EOF || ctx.Err() != nil {
					return nil
				}
				if err != nil {
					return err
				}
				if err := printEvent(g, format, env); err != nil {
					return err
				}
			}
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "output format: json (one object per line)")
	return cmd
}

// printEvent writes "TIME NAMESPACE TOPIC EVENT" with the event as JSON,
// or one JSON object per line.
func printEvent(g *globals, format string, env *types.Envelope) error {
	var body []byte
	if env.Event != nil {
		if m, err := env.Event.UnmarshalNew(); err == nil {
			body, _ = protojson.Marshal(m)
		}
	}
	if format == "json" {
		line := eventLine{Timestamp: env.Timestamp.AsTime(), Namespace: env.Namespace, Topic: env.Topic, Event: body}
		data, err := json.Marshal(line)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(g.stdout, string(data))
		return err
	}
	_, err := fmt.Fprintf(g.stdout, "%s %s %s %s\n", env.Timestamp.AsTime().Format(time.RFC3339Nano), env.Namespace, env.Topic, body)
	return err
}
