// Package networks serves berth.networks.v1.Networks over a
// network.Manager.
package networks

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/network"
	api "github.com/berthd/berth/proto/berth/networks/v1"
)

// Service answers network calls.
type Service struct {
	api.UnimplementedNetworksServer
	m network.Manager
}

// New returns the service over m.
func New(m network.Manager) *Service { return &Service{m: m} }

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterNetworksServer(g, s)
	return nil
}

// Create makes a network.
func (s *Service) Create(ctx context.Context, req *api.CreateNetworkRequest) (*api.CreateNetworkResponse, error) {
	n, err := s.m.CreateNetwork(ctx, network.CreateRequest{
		Name: req.Name, Driver: req.Driver, Subnet: req.Subnet, Gateway: req.Gateway,
		Internal: req.Internal, Labels: req.Labels, Options: req.Options,
	})
	if err != nil {
		return nil, err
	}
	return &api.CreateNetworkResponse{Network: NetworkToProto(n, false)}, nil
}

// List returns the networks matching any of the filters.
func (s *Service) List(ctx context.Context, req *api.ListNetworksRequest) (*api.ListNetworksResponse, error) {
	match, err := filters.ParseAll(req.Filters...)
	if err != nil {
		return nil, fmt.Errorf("networks filter: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	nets, err := s.m.Networks(ctx)
	if err != nil {
		return nil, err
	}
	resp := &api.ListNetworksResponse{}
	for _, n := range nets {
		if match.Match(adaptor(n)) {
			resp.Networks = append(resp.Networks, NetworkToProto(n, false))
		}
	}
	return resp, nil
}

func adaptor(n *network.Network) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "id":
			return n.ID, true
		case "name":
			return n.Name, true
		case "driver":
			return n.Driver, true
		case "source":
			return n.Source, true
		case "internal":
			return strconv.FormatBool(n.Internal), true
		case "default":
			return strconv.FormatBool(n.Default), true
		case "labels":
			v, ok := n.Labels[strings.Join(fp[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

// Inspect returns a network and its attachments.
func (s *Service) Inspect(ctx context.Context, req *api.InspectNetworkRequest) (*api.InspectNetworkResponse, error) {
	n, err := s.m.Network(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	atts, err := s.m.Attachments(ctx, network.AttachmentFilter{Network: n.Name})
	if err != nil {
		return nil, err
	}
	resp := &api.InspectNetworkResponse{Network: NetworkToProto(n, true)}
	for _, a := range atts {
		resp.Attachments = append(resp.Attachments, AttachmentToProto(a))
	}
	return resp, nil
}

// Remove removes a network.
func (s *Service) Remove(ctx context.Context, req *api.RemoveNetworkRequest) (*emptypb.Empty, error) {
	if err := s.m.RemoveNetwork(ctx, req.Name); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Prune removes unused networks.
func (s *Service) Prune(ctx context.Context, _ *api.PruneNetworksRequest) (*api.PruneNetworksResponse, error) {
	removed, err := s.m.PruneNetworks(ctx)
	if err != nil {
		return nil, err
	}
	return &api.PruneNetworksResponse{Removed: removed}, nil
}

// Attach joins a container to a network.
func (s *Service) Attach(ctx context.Context, req *api.AttachRequest) (*api.AttachResponse, error) {
	ports, err := PortsFromProto(req.Ports)
	if err != nil {
		return nil, err
	}
	ar := network.AttachRequest{
		ContainerID: req.ContainerId, Name: req.Name, Network: req.Network,
		NetNS: req.Netns, IfName: req.Ifname, Ports: ports, Aliases: req.Aliases, MAC: req.Mac,
	}
	if req.Ip != "" {
		if ar.IP, err = netip.ParseAddr(req.Ip); err != nil {
			return nil, fmt.Errorf("ip %q is not an IP address: %w", req.Ip, errdefs.ErrInvalidArgument)
		}
	}
	a, err := s.m.Attach(ctx, ar)
	if err != nil {
		return nil, err
	}
	return &api.AttachResponse{Attachment: AttachmentToProto(a)}, nil
}

// Detach removes a container from a network.
func (s *Service) Detach(ctx context.Context, req *api.DetachRequest) (*emptypb.Empty, error) {
	if err := s.m.Detach(ctx, req.ContainerId, req.Network); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
