// Package errgrpc maps errdefs errors to gRPC status codes and back. Every
// service returns errors through ToGRPC (the daemon's interceptor does it),
// and every client turns statuses back into errdefs errors with ToNative, so
// errors.Is(err, errdefs.ErrNotFound) works on both sides of the socket.
package errgrpc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var classes = []struct {
	err  error
	code codes.Code
}{
	{errdefs.ErrInvalidArgument, codes.InvalidArgument},
	{errdefs.ErrNotFound, codes.NotFound},
	{errdefs.ErrAlreadyExists, codes.AlreadyExists},
	{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
	{errdefs.ErrConflict, codes.FailedPrecondition},
	{errdefs.ErrNotModified, codes.FailedPrecondition},
	{errdefs.ErrUnavailable, codes.Unavailable},
	{errdefs.ErrNotImplemented, codes.Unimplemented},
	{errdefs.ErrPermissionDenied, codes.PermissionDenied},
	{errdefs.ErrResourceExhausted, codes.ResourceExhausted},
	{errdefs.ErrAborted, codes.Aborted},
	{errdefs.ErrOutOfRange, codes.OutOfRange},
	{errdefs.ErrInternal, codes.Internal},
	{errdefs.ErrDataLoss, codes.DataLoss},
	{errdefs.ErrUnauthenticated, codes.Unauthenticated},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// Code returns the gRPC code for err.
func Code(err error) codes.Code {
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return codes.Unknown
}

// ToGRPC converts err into a gRPC status error, keeping its message. A nil
// error stays nil and an error that already is a status passes unchanged.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}

// ToNative converts a gRPC status error into the matching errdefs error, so
// callers test it with errors.Is. The message is kept, without the class
// suffix ("...: not found") the server added, which the wrap adds back.
func ToNative(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := s.Message()
	var class error
	for _, c := range classes {
		if c.code == s.Code() {
			class = c.err
			break
		}
	}
	if class == nil {
		return errors.New(msg)
	}
	msg = strings.TrimSuffix(msg, ": "+class.Error())
	if msg == class.Error() || msg == "" {
		return class
	}
	return fmt.Errorf("%s: %w", msg, class)
}
