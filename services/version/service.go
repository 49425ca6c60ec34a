// Package version serves containerd.services.version.v1.Version.
package version

import (
	"context"

	api "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/internal/version"
)

// Service answers Version calls.
type Service struct {
	api.UnimplementedVersionServer
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterVersionServer(g, s)
	return nil
}

// Version returns berthd's version and git revision.
func (s *Service) Version(context.Context, *emptypb.Empty) (*api.VersionResponse, error) {
	return &api.VersionResponse{Version: version.Version, Revision: version.Revision}, nil
}
