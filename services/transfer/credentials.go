package transfer

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"

	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/core/remotes/auth"
	"github.com/berthd/berth/services/transfer/streaming"
)

// credentialAsker asks the client for a host's credentials over the
// request's credential stream: an AuthRequest out, an AuthResponse back,
// one exchange at a time. Answers are kept for the request only, so a
// registry challenging many requests costs one round trip per host. They
// are never logged.
type credentialAsker struct {
	stream streaming.Stream
	ref    string

	mu    sync.Mutex
	cache map[string]credentialAnswer
}

type credentialAnswer struct {
	cred auth.Credential
	err  error
}

func (c *credentialAsker) get(ctx context.Context, host string) (auth.Credential, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.cache[host]; ok {
		return a.cred, a.err
	}
	cred, err := c.ask(ctx, host)
	c.cache[host] = credentialAnswer{cred, err}
	return cred, err
}

func (c *credentialAsker) ask(ctx context.Context, host string) (auth.Credential, error) {
	if err := ctx.Err(); err != nil {
		return auth.Credential{}, err
	}
	req, err := anypb.New(&transfertypes.AuthRequest{Host: host, Reference: c.ref})
	if err != nil {
		return auth.Credential{}, err
	}
	if err := c.stream.Send(req); err != nil {
		return auth.Credential{}, fmt.Errorf("ask the client for credentials: %w", err)
	}
	a, err := c.stream.Recv()
	if err != nil {
		return auth.Credential{}, fmt.Errorf("credentials from the client: %w", err)
	}
	var resp transfertypes.AuthResponse
	if err := a.UnmarshalTo(&resp); err != nil {
		return auth.Credential{}, fmt.Errorf("credentials from the client: got %s, not an AuthResponse: %w", a.GetTypeUrl(), errdefs.ErrInvalidArgument)
	}
	return credentialFrom(&resp)
}

// credentialFrom maps containerd's answer kinds: CREDENTIALS is a user and
// password (or token server secret), REFRESH a refresh token, HEADER an
// Authorization value ("Bearer <token>" or "Basic <base64>").
func credentialFrom(r *transfertypes.AuthResponse) (auth.Credential, error) {
	switch r.GetAuthType() {
	case transfertypes.AuthType_NONE:
		return auth.Credential{}, nil
	case transfertypes.AuthType_CREDENTIALS:
		return auth.Credential{Username: r.GetUsername(), Password: r.GetSecret()}, nil
	case transfertypes.AuthType_REFRESH:
		return auth.Credential{IdentityToken: r.GetSecret()}, nil
	case transfertypes.AuthType_HEADER:
		return headerCredential(r.GetSecret())
	}
	return auth.Credential{}, fmt.Errorf("credentials from the client: auth type %d is unknown: %w", r.GetAuthType(), errdefs.ErrInvalidArgument)
}

func headerCredential(v string) (auth.Credential, error) {
	scheme, value, _ := strings.Cut(strings.TrimSpace(v), " ")
	switch strings.ToLower(scheme) {
	case "bearer":
		return auth.Credential{RegistryToken: strings.TrimSpace(value)}, nil
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
		if err != nil {
			return auth.Credential{}, fmt.Errorf("credentials from the client: Basic header is not base64: %w", errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return auth.Credential{}, fmt.Errorf("credentials from the client: Basic header is not user:password: %w", errdefs.ErrInvalidArgument)
		}
		return auth.Credential{Username: user, Password: pass}, nil
	}
	return auth.Credential{}, fmt.Errorf("credentials from the client: Authorization scheme %q is not supported (Bearer or Basic): %w", scheme, errdefs.ErrNotImplemented)
}
