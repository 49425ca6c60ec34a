// Package introspection serves containerd.services.introspection.v1: the
// list of plugins with their status, and the server's identity.
package introspection

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	api "github.com/containerd/containerd/api/services/introspection/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpc "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/filters"
	"github.com/berthd/berth/plugins"
)

// Service answers introspection calls.
type Service struct {
	api.UnimplementedIntrospectionServer
	set  *plugins.Set
	uuid string
}

// New returns the service over set. The server's UUID is kept in dir so it
// survives restarts, as clients use it to tell daemons apart.
func New(set *plugins.Set, dir string) (*Service, error) {
	id, err := loadUUID(dir)
	if err != nil {
		return nil, err
	}
	return &Service{set: set, uuid: id}, nil
}

func loadUUID(dir string) (string, error) {
	path := filepath.Join(dir, "uuid")
	if b, err := os.ReadFile(path); err == nil {
		if id, err := uuid.Parse(strings.TrimSpace(string(b))); err == nil {
			return id.String(), nil
		}
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("read server uuid: %w", err)
	}
	id := uuid.New().String()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", fmt.Errorf("create introspection dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write server uuid: %w", err)
	}
	return id, nil
}

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterIntrospectionServer(g, s)
	return nil
}

// Plugins lists plugins matching any of the request's filters.
func (s *Service) Plugins(ctx context.Context, req *api.PluginsRequest) (*api.PluginsResponse, error) {
	match, err := filters.ParseAll(req.Filters...)
	if err != nil {
		return nil, fmt.Errorf("plugins filter: %w", err)
	}
	resp := &api.PluginsResponse{}
	for _, p := range s.set.All() {
		pb := toProto(p)
		if match.Match(adaptor(pb)) {
			resp.Plugins = append(resp.Plugins, pb)
		}
	}
	return resp, nil
}

// Server returns the daemon's identity.
func (s *Service) Server(context.Context, *emptypb.Empty) (*api.ServerResponse, error) {
	resp := &api.ServerResponse{UUID: s.uuid, Pid: uint64(os.Getpid())}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err == nil {
		resp.Pidns = st.Ino
	}
	return resp, nil
}

// PluginInfo returns one plugin's description.
func (s *Service) PluginInfo(ctx context.Context, req *api.PluginInfoRequest) (*api.PluginInfoResponse, error) {
	p := s.set.Get(plugins.Type(req.Type), req.ID)
	if p == nil {
		return nil, fmt.Errorf("plugin %s.%s: %w", req.Type, req.ID, errdefs.ErrNotFound)
	}
	if req.Options != nil {
		return nil, fmt.Errorf("plugin %s.%s takes no info options: %w", req.Type, req.ID, errdefs.ErrNotImplemented)
	}
	return &api.PluginInfoResponse{Plugin: toProto(p)}, nil
}

func toProto(p *plugins.Plugin) *api.Plugin {
	r := p.Registration
	pb := &api.Plugin{
		Type:         string(r.Type),
		ID:           r.ID,
		Exports:      p.Meta.Exports,
		Capabilities: p.Meta.Capabilities,
	}
	for _, t := range r.Requires {
		pb.Requires = append(pb.Requires, string(t))
	}
	for _, pl := range p.Meta.Platforms {
		pb.Platforms = append(pb.Platforms, &types.Platform{OS: pl.OS, Architecture: pl.Architecture, Variant: pl.Variant})
	}
	if err := p.Err(); err != nil {
		// ctr prints "skip" when the message carries ErrSkipPlugin's text
		// and "error" otherwise; the code tells other clients the same.
		st := &rpc.Status{Code: int32(code.Code_UNKNOWN), Message: err.Error()}
		if errors.Is(err, plugins.ErrSkipPlugin) {
			st.Code = int32(code.Code_FAILED_PRECONDITION)
		}
		pb.InitErr = st
	}
	return pb
}

func adaptor(p *api.Plugin) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "type":
			return p.Type, true
		case "id":
			return p.ID, true
		case "capabilities":
			if len(fieldpath) > 1 {
				for _, c := range p.Capabilities {
					if c == strings.Join(fieldpath[1:], ".") {
						return c, true
					}
				}
			}
		case "exports":
			if len(fieldpath) > 1 {
				v, ok := p.Exports[strings.Join(fieldpath[1:], ".")]
				return v, ok
			}
		case "platforms":
			for _, pl := range p.Platforms {
				return pl.OS + "/" + pl.Architecture, true
			}
		}
		return "", false
	})
}

// UUID is the server's persistent identity.
func (s *Service) UUID() string { return s.uuid }
