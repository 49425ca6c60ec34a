// Package berthcontainers serves berth.containers.v1.Containers over
// core/run: decode the request, call the manager, encode.
package berthcontainers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthd/berth/core/run"
	"github.com/berthd/berth/core/run/logs"
	"github.com/berthd/berth/internal/protoconv"
	api "github.com/berthd/berth/proto/berth/containers/v1"
)

var empty = &emptypb.Empty{}

// Service answers container calls.
type Service struct {
	api.UnimplementedContainersServer
	m *run.Manager
}

// New returns the service over m.
func New(m *run.Manager) *Service { return &Service{m: m} }

// Register implements plugins.GRPCService.
func (s *Service) Register(g *grpc.Server) error {
	api.RegisterContainersServer(g, s)
	return nil
}

// Create makes a container.
func (s *Service) Create(ctx context.Context, req *api.CreateRequest) (*api.CreateResponse, error) {
	o, err := optionsFromProto(req.Config)
	if err != nil {
		return nil, err
	}
	r, err := s.m.Create(ctx, req.Name, o)
	if err != nil {
		return nil, err
	}
	return &api.CreateResponse{Id: r.ID, Name: r.Config.Name}, nil
}

// Start runs a container.
func (s *Service) Start(ctx context.Context, req *api.StartRequest) (*emptypb.Empty, error) {
	return empty, s.m.Start(ctx, req.Id)
}

func stopTimeout(t int32) time.Duration {
	if t < 0 {
		return -1
	}
	return time.Duration(t) * time.Second
}

// Stop stops a container.
func (s *Service) Stop(ctx context.Context, req *api.StopRequest) (*emptypb.Empty, error) {
	return empty, s.m.Stop(ctx, req.Id, stopTimeout(req.Timeout), req.Signal)
}

// Restart stops and starts a container.
func (s *Service) Restart(ctx context.Context, req *api.StopRequest) (*emptypb.Empty, error) {
	return empty, s.m.Restart(ctx, req.Id, stopTimeout(req.Timeout), req.Signal)
}

// Kill signals a container.
func (s *Service) Kill(ctx context.Context, req *api.KillRequest) (*emptypb.Empty, error) {
	return empty, s.m.Kill(ctx, req.Id, req.Signal)
}

// Pause freezes a container.
func (s *Service) Pause(ctx context.Context, req *api.ContainerRequest) (*emptypb.Empty, error) {
	return empty, s.m.Pause(ctx, req.Id)
}

// Unpause thaws a container.
func (s *Service) Unpause(ctx context.Context, req *api.ContainerRequest) (*emptypb.Empty, error) {
	return empty, s.m.Unpause(ctx, req.Id)
}

// Remove deletes a container.
func (s *Service) Remove(ctx context.Context, req *api.RemoveRequest) (*emptypb.Empty, error) {
	return empty, s.m.Remove(ctx, req.Id, req.Force, req.Volumes)
}

// Prune removes stopped containers.
func (s *Service) Prune(ctx context.Context, req *api.PruneRequest) (*api.PruneResponse, error) {
	f, err := run.ParseFilters(req.Filters)
	if err != nil {
		return nil, err
	}
	removed, space, err := s.m.Prune(ctx, f)
	if err != nil {
		return nil, err
	}
	return &api.PruneResponse{Removed: removed, Reclaimed: space}, nil
}

// List returns containers.
func (s *Service) List(ctx context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	f, err := run.ParseFilters(req.Filters)
	if err != nil {
		return nil, err
	}
	all, err := s.m.List(ctx)
	if err != nil {
		return nil, err
	}
	nets, err := s.m.NetworkStatuses(ctx)
	if err != nil {
		return nil, err
	}
	resp := &api.ListResponse{}
	for _, r := range all {
		if !req.All && !r.State.Running() && r.State.Status != run.StatusRestarting {
			continue
		}
		if !f(r) {
			continue
		}
		c := containerToProto(r)
		withNetwork(c, r, nets[r.ID])
		if req.Size {
			c.SizeRw = s.m.LayerSize(ctx, r)
		}
		resp.Containers = append(resp.Containers, c)
	}
	return resp, nil
}

// Inspect returns one container.
func (s *Service) Inspect(ctx context.Context, req *api.ContainerRequest) (*api.InspectResponse, error) {
	r, err := s.m.Inspect(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	c := containerToProto(r)
	withNetwork(c, r, s.m.NetworkStatus(ctx, r))
	c.SizeRw = s.m.LayerSize(ctx, r)
	resp := &api.InspectResponse{Container: c}
	if r.Container.Spec != nil {
		resp.Spec = r.Container.Spec.GetValue()
	}
	return resp, nil
}

// Rename renames a container.
func (s *Service) Rename(ctx context.Context, req *api.RenameRequest) (*emptypb.Empty, error) {
	return empty, s.m.Rename(ctx, req.Id, req.Name)
}

// Wait waits for a container's exit.
func (s *Service) Wait(ctx context.Context, req *api.WaitRequest) (*api.WaitResponse, error) {
	code, err := s.m.Wait(ctx, req.Id, req.Condition)
	if err != nil {
		return nil, err
	}
	return &api.WaitResponse{ExitCode: int32(code)}, nil
}

// Logs streams a container's log.
func (s *Service) Logs(req *api.LogsRequest, stream api.Containers_LogsServer) error {
	o := run.LogOptions{Follow: req.Follow, Tail: req.Tail}
	if req.Since != nil {
		o.Since = req.Since.AsTime()
	}
	if req.Until != nil {
		o.Until = req.Until.AsTime()
	}
	return s.m.Logs(stream.Context(), req.Id, o, func(e logs.Entry) error {
		return stream.Send(&api.LogEntry{Stream: e.Stream, Time: protoconv.Timestamp(e.Time), Data: e.Data})
	})
}

// session is what Attach and Exec share: the input side of a stream.
type session interface {
	Write(ctx context.Context, p []byte) error
	CloseStdin(ctx context.Context) error
	Resize(ctx context.Context, width, height uint32) error
	Signal(ctx context.Context, sig string) error
}

// input is one client message of Attach or Exec after the first.
type input struct {
	stdin      []byte
	closeStdin bool
	resize     *api.Resize
	signal     string
}

// pumpInput applies the client's messages to sess until the stream ends.
func pumpInput(ctx context.Context, recv func() (input, error), sess session) {
	for {
		in, err := recv()
		if err != nil {
			// The client went away or closed its side: no more input.
			return
		}
		switch {
		case in.stdin != nil:
			err = sess.Write(ctx, in.stdin)
		case in.closeStdin:
			err = sess.CloseStdin(ctx)
		case in.resize != nil:
			err = sess.Resize(ctx, in.resize.Width, in.resize.Height)
		case in.signal != "":
			err = sess.Signal(ctx, in.signal)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			// Input problems (stdin closed, the process gone) do not end
			// the output, which says how the process ended.
			continue
		}
	}
}

// sender serialises a stream's sends.
type sender struct {
	mu   sync.Mutex
	send func(*api.StreamResponse) error
}

func (s *sender) output(stream string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.send(&api.StreamResponse{Msg: &api.StreamResponse_Output{Output: &api.Output{Stream: stream, Data: data}}})
}

func (s *sender) msg(m *api.StreamResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.send(m)
}

func attachedMsg(id string, tty bool) *api.StreamResponse {
	return &api.StreamResponse{Msg: &api.StreamResponse_Attached{Attached: &api.Attached{Id: id, Tty: tty}}}
}

func exitMsg(code int, errText string) *api.StreamResponse {
	return &api.StreamResponse{Msg: &api.StreamResponse_Exit{Exit: &api.Exit{Code: int32(code), Error: errText}}}
}

// Attach connects a client to a container's streams.
func (s *Service) Attach(stream api.Containers_AttachServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return fmt.Errorf("the first attach message must open the attachment: %w", errdefs.ErrInvalidArgument)
	}
	att, err := s.m.Attach(ctx, open.Id, run.AttachOptions{Stdin: open.Stdin, Logs: open.Logs})
	if err != nil {
		return err
	}
	snd := &sender{send: stream.Send}
	ready := func() {
		_ = snd.msg(attachedMsg(att.ID, att.TTY))
		go pumpInput(ctx, func() (input, error) {
			m, err := stream.Recv()
			if err != nil {
				return input{}, err
			}
			return input{stdin: m.GetStdin(), closeStdin: m.GetCloseStdin(), resize: m.GetResize(), signal: m.GetSignal()}, nil
		}, att)
	}
	code, err := att.Stream(ctx, ready, snd.output)
	if err != nil {
		return err
	}
	return snd.msg(exitMsg(code, ""))
}

// execSession adapts run.ExecSession's Write to session.
type execSession struct{ *run.ExecSession }

func (e execSession) Write(_ context.Context, p []byte) error { return e.ExecSession.Write(p) }

// Exec runs a process in a container.
func (s *Service) Exec(stream api.Containers_ExecServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return fmt.Errorf("the first exec message must describe the process: %w", errdefs.ErrInvalidArgument)
	}
	sess, err := s.m.Exec(ctx, open.Id, run.ExecOptions{
		Args: open.Args, Env: open.Env, WorkingDir: open.WorkingDir, User: open.User,
		Tty: open.Tty, Stdin: open.Stdin, Privileged: open.Privileged, Detach: open.Detach,
	})
	snd := &sender{send: stream.Send}
	var se *run.StartError
	if errors.As(err, &se) {
		return snd.msg(exitMsg(se.Code, se.Error()))
	}
	if err != nil {
		return err
	}
	if err := snd.msg(attachedMsg(sess.ID, sess.TTY)); err != nil {
		return err
	}
	if open.Detach {
		return nil
	}
	go pumpInput(ctx, func() (input, error) {
		m, err := stream.Recv()
		if err != nil {
			return input{}, err
		}
		return input{stdin: m.GetStdin(), closeStdin: m.GetCloseStdin(), resize: m.GetResize(), signal: m.GetSignal()}, nil
	}, execSession{sess})
	code, err := sess.Stream(ctx, snd.output)
	if err != nil {
		return err
	}
	return snd.msg(exitMsg(code, ""))
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
