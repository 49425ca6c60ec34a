package command

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	ttrpcevents "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthd/berth/cmd/berthd/server"
	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/internal/errgrpc"
)

const (
	// maxEventSize bounds the event read from stdin.
	maxEventSize   = 4 << 20
	publishTimeout = 10 * time.Second
)

// publishCommand is the helper shims that publish by running a binary call
// (containerd's v1 shim contract): `berthd [--address A] publish --topic T
// --namespace NS` with the event, a protobuf google.protobuf.Any, on
// stdin. The event goes to the events service of the berthd at A (the
// gRPC socket, or the ttrpc socket when A is the one shims are given).
func publishCommand(f *flags) *cobra.Command {
	var topic, namespace string
	cmd := &cobra.Command{
		Use:    "publish --topic TOPIC --namespace NS",
		Short:  "publish an event read from stdin (called by shims)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := events.ValidateTopic(topic); err != nil {
				return err
			}
			if err := identifiers.Validate(namespace); err != nil {
				return fmt.Errorf("--namespace: %w", err)
			}
			event, err := readEvent(cmd.InOrStdin())
			if err != nil {
				return err
			}
			address := f.address
			if address == "" {
				address = server.DefaultAddress
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), publishTimeout)
			defer cancel()
			return publish(ctx, strings.TrimPrefix(address, "unix://"), namespace, topic, event)
		},
	}
	cmd.Flags().StringVar(&topic, "topic", "", "topic of the event, e.g. /tasks/exit")
	cmd.Flags().StringVar(&namespace, "namespace", "", "namespace of the event")
	return cmd
}

func readEvent(r io.Reader) (*anypb.Any, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxEventSize+1))
	if err != nil {
		return nil, fmt.Errorf("read event from stdin: %w", err)
	}
	if len(data) > maxEventSize {
		return nil, fmt.Errorf("event on stdin is larger than %d bytes", maxEventSize)
	}
	var a anypb.Any
	if err := proto.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("event on stdin is not a protobuf Any: %w", err)
	}
	if a.TypeUrl == "" {
		return nil, fmt.Errorf("event on stdin has no type")
	}
	return &a, nil
}

// publish sends the event over ttrpc when address is a ttrpc socket
// (named *.ttrpc, as berthd's is), else over gRPC.
func publish(ctx context.Context, address, ns, topic string, event *anypb.Any) error {
	if strings.HasSuffix(address, ".ttrpc") {
		return publishTTRPC(ctx, address, ns, topic, event)
	}
	conn, err := grpc.NewClient("passthrough:///"+address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", address)
		}))
	if err != nil {
		return fmt.Errorf("connect to berthd at %s: %w", address, err)
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, namespaces.GRPCHeader, ns)
	_, err = eventsapi.NewEventsClient(conn).Publish(ctx, &eventsapi.PublishRequest{Topic: topic, Event: event})
	if err != nil {
		return fmt.Errorf("publish %s to %s: %w", topic, address, errgrpc.ToNative(err))
	}
	return nil
}

func publishTTRPC(ctx context.Context, address, ns, topic string, event *anypb.Any) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", address)
	if err != nil {
		return fmt.Errorf("connect to berthd at %s: %w", address, err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	_, err = ttrpcevents.NewTTRPCEventsClient(client).Forward(ctx, &ttrpcevents.ForwardRequest{Envelope: &types.Envelope{
		Timestamp: timestamppb.Now(), Namespace: ns, Topic: topic, Event: event,
	}})
	if err != nil {
		return fmt.Errorf("publish %s to %s: %w", topic, address, errgrpc.ToNative(err))
	}
	return nil
}
