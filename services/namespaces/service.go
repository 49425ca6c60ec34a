// Package namespaces serves containerd.services.namespaces.v1.Namespaces.
package namespaces

import (
	"context"
	"fmt"

	apievents "github.com/containerd/containerd/api/events"
	api "github.com/containerd/containerd/api/services/namespaces/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/core/metadata"
	nsctx "github.com/berthd/berth/core/namespaces"
)

// Service answers namespace calls.
type Service struct {
	api.UnimplementedNamespacesServer
	store  *metadata.Namespaces
	events events.Publisher
}

// New returns the service over db; events may be nil.
func New(db *metadata.DB, ex events.Publisher) *Service {
	return &Service{store: db.Namespaces(), events: ex}
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterNamespacesServer(g, s)
	return nil
}

// publish sends a namespace event. Namespace events belong to the
// namespace they describe, so subscribers there see them.
func (s *Service) publish(ctx context.Context, ns, topic string, event any) {
	if s.events != nil {
		s.events.Publish(nsctx.WithNamespace(ctx, ns), topic, event)
	}
}

// Get returns one namespace.
func (s *Service) Get(ctx context.Context, req *api.GetNamespaceRequest) (*api.GetNamespaceResponse, error) {
	lbls, err := s.store.Labels(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	return &api.GetNamespaceResponse{Namespace: &api.Namespace{Name: req.Name, Labels: lbls}}, nil
}

// List returns every namespace matching the filter.
func (s *Service) List(ctx context.Context, req *api.ListNamespacesRequest) (*api.ListNamespacesResponse, error) {
	var match filters.Filter = filters.All{}
	if req.Filter != "" {
		f, err := filters.Parse(req.Filter)
		if err != nil {
			return nil, fmt.Errorf("namespaces filter: %w", err)
		}
		match = f
	}
	names, err := s.store.List(ctx)
	if err != nil {
		return nil, err
	}
	resp := &api.ListNamespacesResponse{}
	for _, n := range names {
		lbls, err := s.store.Labels(ctx, n)
		if err != nil {
			continue // removed meanwhile
		}
		ns := &api.Namespace{Name: n, Labels: lbls}
		if match.Match(adaptor(ns)) {
			resp.Namespaces = append(resp.Namespaces, ns)
		}
	}
	return resp, nil
}

// Create makes a namespace.
func (s *Service) Create(ctx context.Context, req *api.CreateNamespaceRequest) (*api.CreateNamespaceResponse, error) {
	if req.Namespace == nil {
		return nil, fmt.Errorf("namespace is required: %w", errInvalid)
	}
	if err := s.store.Create(ctx, req.Namespace.Name, req.Namespace.Labels); err != nil {
		return nil, err
	}
	s.publish(ctx, req.Namespace.Name, "/namespaces/create", &apievents.NamespaceCreate{Name: req.Namespace.Name, Labels: req.Namespace.Labels})
	return &api.CreateNamespaceResponse{Namespace: req.Namespace}, nil
}

// Update changes a namespace's labels.
func (s *Service) Update(ctx context.Context, req *api.UpdateNamespaceRequest) (*api.UpdateNamespaceResponse, error) {
	if req.Namespace == nil {
		return nil, fmt.Errorf("namespace is required: %w", errInvalid)
	}
	lbls, err := s.store.Update(ctx, req.Namespace.Name, req.Namespace.Labels, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	ns := &api.Namespace{Name: req.Namespace.Name, Labels: lbls}
	s.publish(ctx, ns.Name, "/namespaces/update", &apievents.NamespaceUpdate{Name: ns.Name, Labels: ns.Labels})
	return &api.UpdateNamespaceResponse{Namespace: ns}, nil
}

// Delete removes an empty namespace.
func (s *Service) Delete(ctx context.Context, req *api.DeleteNamespaceRequest) (*emptypb.Empty, error) {
	if err := s.store.Delete(ctx, req.Name); err != nil {
		return nil, err
	}
	s.publish(ctx, req.Name, "/namespaces/delete", &apievents.NamespaceDelete{Name: req.Name})
	return &emptypb.Empty{}, nil
}

func adaptor(ns *api.Namespace) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		switch {
		case len(fp) == 1 && fp[0] == "name":
			return ns.Name, true
		case len(fp) > 1 && fp[0] == "labels":
			v, ok := ns.Labels[joinPath(fp[1:])]
			return v, ok
		}
		return "", false
	})
}
