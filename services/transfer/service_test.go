package transfer

import (
	"context"
	"errors"
	"strings"
	"testing"

	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/remotes/auth"
	"github.com/berthd/berth/services/transfer/streaming"
)

func TestCredentialKinds(t *testing.T) {
	for _, c := range []struct {
		resp *transfertypes.AuthResponse
		want auth.Credential
		err  error
	}{
		{&transfertypes.AuthResponse{AuthType: transfertypes.AuthType_NONE}, auth.Credential{}, nil},
		{&transfertypes.AuthResponse{AuthType: transfertypes.AuthType_CREDENTIALS, Username: "u", Secret: "p"}, auth.Credential{Username: "u", Password: "p"}, nil},
		{&transfertypes.AuthResponse{AuthType: transfertypes.AuthType_REFRESH, Secret: "r"}, auth.Credential{IdentityToken: "r"}, nil},
		{&transfertypes.AuthResponse{AuthType: transfertypes.AuthType_HEADER, Secret: "Bearer tok"}, auth.Credential{RegistryToken: "tok"}, nil},
		{&transfertypes.AuthResponse{AuthType: transfertypes.AuthType_HEADER, Secret: "Basic dTpwOnc="}, auth.Credential{Username: "u", Password: "p:w"}, nil},
		{&transfertypes.AuthResponse{AuthType: transfertypes.AuthType_HEADER, Secret: "Basic !!"}, auth.Credential{}, errdefs.ErrInvalidArgument},
		{&transfertypes.AuthResponse{AuthType: transfertypes.AuthType_HEADER, Secret: "Digest x"}, auth.Credential{}, errdefs.ErrNotImplemented},
		{&transfertypes.AuthResponse{AuthType: 42}, auth.Credential{}, errdefs.ErrInvalidArgument},
	} {
		got, err := credentialFrom(c.resp)
		if got != c.want || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%v: got %v, %v; want %v, %v", c.resp, got, err, c.want, c.err)
		}
		if err != nil && c.resp.Secret != "" && strings.Contains(err.Error(), c.resp.Secret) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
}

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Requests berthd cannot serve are refused before anything runs.
func TestTransferRefusals(t *testing.T) {
	s := New(Options{Streams: streaming.NewManager()})
	ctx := namespaces.WithNamespace(context.Background(), "test")
	reg := anyOf(t, &transfertypes.OCIRegistry{Reference: "example.com/app:1"})
	store := anyOf(t, &transfertypes.ImageStore{Name: "example.com/app:1"})
	for _, c := range []struct {
		name string
		req  *transferapi.TransferRequest
		want error
	}{
		{"no source", &transferapi.TransferRequest{Destination: store}, errdefs.ErrInvalidArgument},
		{"unknown type", &transferapi.TransferRequest{Source: anyOf(t, wrapperspb.String("x")), Destination: store}, errdefs.ErrNotImplemented},
		{"registry to registry", &transferapi.TransferRequest{Source: reg, Destination: reg}, errdefs.ErrNotImplemented},
		{"store to store", &transferapi.TransferRequest{Source: store, Destination: store}, errdefs.ErrNotImplemented},
		{"missing progress stream", &transferapi.TransferRequest{Source: reg, Destination: store, Options: &transferapi.TransferOptions{ProgressStream: "nope"}}, errdefs.ErrNotFound},
		{"missing auth stream", &transferapi.TransferRequest{
			Source:      anyOf(t, &transfertypes.OCIRegistry{Reference: "example.com/app:1", Resolver: &transfertypes.RegistryResolver{AuthStream: "nope"}}),
			Destination: store}, errdefs.ErrNotFound},
		{"bad scheme", &transferapi.TransferRequest{
			Source:      anyOf(t, &transfertypes.OCIRegistry{Reference: "example.com/app:1", Resolver: &transfertypes.RegistryResolver{DefaultScheme: "ftp"}}),
			Destination: store}, errdefs.ErrInvalidArgument},
		{"no reference", &transferapi.TransferRequest{Source: anyOf(t, &transfertypes.OCIRegistry{}), Destination: store}, errdefs.ErrInvalidArgument},
	} {
		if _, err := s.Transfer(ctx, c.req); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
