package errgrpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("image %q: %w", "x", errdefs.ErrNotFound), codes.NotFound},
		{fmt.Errorf("bad name: %w", errdefs.ErrInvalidArgument), codes.InvalidArgument},
		{fmt.Errorf("taken: %w", errdefs.ErrAlreadyExists), codes.AlreadyExists},
		{fmt.Errorf("in use: %w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{fmt.Errorf("locked: %w", errdefs.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("nope: %w", errdefs.ErrNotImplemented), codes.Unimplemented},
		{context.Canceled, codes.Canceled},
		{errors.New("plain"), codes.Unknown},
	} {
		g := ToGRPC(c.err)
		s, _ := status.FromError(g)
		if s.Code() != c.code {
			t.Errorf("%v: code %v, want %v", c.err, s.Code(), c.code)
		}
		if s.Message() != c.err.Error() {
			t.Errorf("%v: message %q", c.err, s.Message())
		}
		back := ToNative(g)
		if back.Error() != c.err.Error() {
			t.Errorf("round trip of %q gave %q", c.err, back)
		}
		for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrAlreadyExists} {
			if errors.Is(c.err, class) != errors.Is(back, class) {
				t.Errorf("%v: errors.Is(%v) changed across the round trip", c.err, class)
			}
		}
	}
	if ToGRPC(nil) != nil || ToNative(nil) != nil {
		t.Fatal("nil must stay nil")
	}
	st := status.Error(codes.NotFound, "already a status")
	if ToGRPC(st) != st {
		t.Fatal("a status error must pass unchanged")
	}
}
