package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	streamingapi "github.com/containerd/containerd/api/services/streaming/v1"
	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/core/remotes/auth"
)

// The client half of containerd's transfer protocol: before the Transfer
// call, the client opens streams with the streaming service (a StreamInit
// naming each, acknowledged by berthd) and names them in the request —
// one on which berthd sends progress, one on which it asks for
// credentials. berthd closes them when the transfer ends.

// transferCall is one transfer to run.
type transferCall struct {
	src, dst proto.Message
	// progress, when set, receives progress events.
	progress func(*transfertypes.Progress)
	// creds, when set, answers berthd's credential requests.
	creds *credentials
}

// runTransfer runs the call and returns when berthd has finished it and
// every progress event has been handed over.
func runTransfer(parent context.Context, c *Client, call transferCall) error {
	// Streams end with the call: cancelling their context ends any stream
	// berthd did not close itself.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	req := &transferapi.TransferRequest{Options: &transferapi.TransferOptions{}}
	var progressDone chan struct{}
	if call.progress != nil {
		id := streamID("progress")
		st, err := openStream(ctx, c, id)
		if err != nil {
			return fmt.Errorf("open progress stream: %w", err)
		}
		progressDone = make(chan struct{})
		go receiveProgress(st, call.progress, progressDone)
		req.Options.ProgressStream = id
	}
	if r, ok := call.src.(*transfertypes.OCIRegistry); ok && call.creds != nil {
		if err := attachCredentials(ctx, c, r, call.creds); err != nil {
			return err
		}
	}
	if r, ok := call.dst.(*transfertypes.OCIRegistry); ok && call.creds != nil {
		if err := attachCredentials(ctx, c, r, call.creds); err != nil {
			return err
		}
	}
	var err error
	if req.Source, err = anypb.New(call.src); err != nil {
		return err
	}
	if req.Destination, err = anypb.New(call.dst); err != nil {
		return err
	}
	_, err = transferapi.NewTransferClient(c.Conn()).Transfer(ctx, req)
	if progressDone != nil {
		// berthd closes the progress stream after its last event.
		select {
		case <-progressDone:
		case <-time.After(5 * time.Second):
		}
	}
	return err
}

func streamID(kind string) string {
	var b [8]byte
	rand.Read(b[:])
	return kind + "-" + hex.EncodeToString(b[:])
}

// openStream registers a stream with berthd under id and waits for the
// acknowledgement.
func openStream(ctx context.Context, c *Client, id string) (streamingapi.Streaming_StreamClient, error) {
	st, err := streamingapi.NewStreamingClient(c.Conn()).Stream(ctx)
	if err != nil {
		return nil, err
	}
	init, err := anypb.New(&streamingapi.StreamInit{ID: id})
	if err != nil {
		return nil, err
	}
	if err := st.Send(init); err != nil {
		return nil, err
	}
	if _, err := st.Recv(); err != nil {
		return nil, fmt.Errorf("stream %s not acknowledged: %w", id, err)
	}
	return st, nil
}

func receiveProgress(st streamingapi.Streaming_StreamClient, fn func(*transfertypes.Progress), done chan struct{}) {
	defer close(done)
	for {
		a, err := st.Recv()
		if err != nil {
			return
		}
		var p transfertypes.Progress
		if a.UnmarshalTo(&p) == nil {
			fn(&p)
		}
	}
}

// attachCredentials opens the credential stream of a registry resolver
// and answers berthd's requests on it until the stream ends.
func attachCredentials(ctx context.Context, c *Client, r *transfertypes.OCIRegistry, creds *credentials) error {
	id := streamID("creds")
	st, err := openStream(ctx, c, id)
	if err != nil {
		return fmt.Errorf("open credential stream: %w", err)
	}
	if r.Resolver == nil {
		r.Resolver = &transfertypes.RegistryResolver{}
	}
	r.Resolver.AuthStream = id
	go answerCredentials(st, creds)
	return nil
}

func answerCredentials(st streamingapi.Streaming_StreamClient, creds *credentials) {
	for {
		a, err := st.Recv()
		if err != nil {
			return
		}
		var req transfertypes.AuthRequest
		resp := &transfertypes.AuthResponse{AuthType: transfertypes.AuthType_NONE}
		if a.UnmarshalTo(&req) == nil {
			resp = authResponse(creds.get(req.Host))
		}
		out, err := anypb.New(resp)
		if err != nil {
			return
		}
		if err := st.Send(out); err != nil && !errors.Is(err, io.EOF) {
			return
		}
	}
}

func authResponse(c auth.Credential) *transfertypes.AuthResponse {
	switch {
	case c.IdentityToken != "":
		return &transfertypes.AuthResponse{AuthType: transfertypes.AuthType_REFRESH, Username: c.Username, Secret: c.IdentityToken}
	case c.RegistryToken != "":
		return &transfertypes.AuthResponse{AuthType: transfertypes.AuthType_HEADER, Secret: "Bearer " + c.RegistryToken}
	case c.Username != "" || c.Password != "":
		return &transfertypes.AuthResponse{AuthType: transfertypes.AuthType_CREDENTIALS, Username: c.Username, Secret: c.Password}
	}
	return &transfertypes.AuthResponse{AuthType: transfertypes.AuthType_NONE}
}
