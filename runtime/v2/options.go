package v2

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// runcOptionsType is the type URL of containerd.runc.v1.Options.
var runcOptionsType = string((&options.Options{}).ProtoReflect().Descriptor().FullName())

// isRuncRuntime reports whether runtime is one of the runc shims, which take
// containerd.runc.v1.Options.
func isRuncRuntime(runtime string) bool {
	return strings.Contains(runtime, ".runc.") || strings.Contains(runtime, "shim-runc-")
}

// runcOptions returns the options for a runc shim's Create: the given
// ones with the OCI runtime root set to berth's when they name none, so
// runc's state never lands in /run/runc or containerd's folders. Other
// runtimes get their options unchanged.
func (m *Manager) runcOptions(runtime string, given *anypb.Any) (*anypb.Any, error) {
	if !isRuncRuntime(runtime) {
		return given, nil
	}
	opts := &options.Options{}
	if given != nil && (given.TypeUrl != "" || len(given.Value) > 0) {
		if strings.TrimPrefix(given.TypeUrl, "type.googleapis.com/") != runcOptionsType {
			// An options type this side does not know; the shim decides.
			return given, nil
		}
		if err := proto.Unmarshal(given.Value, opts); err != nil {
			return nil, fmt.Errorf("decode runc options: %v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	if opts.Root == "" {
		opts.Root = m.opts.RuntimeRoot
	}
	data, err := proto.Marshal(opts)
	if err != nil {
		return nil, fmt.Errorf("encode runc options: %w", err)
	}
	typeURL := runcOptionsType
	if given != nil && given.TypeUrl != "" {
		typeURL = given.TypeUrl
	}
	return &anypb.Any{TypeUrl: typeURL, Value: data}, nil
}

func killPid(pid int) {
	syscall.Kill(pid, syscall.SIGKILL)
}

// waitPidExit waits up to limit for process pid to exit, through a pidfd
// (the shim is not berthd's child).
func waitPidExit(pid int, limit time.Duration) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone already (ESRCH), or no pidfd: nothing to wait on
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(limit)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n > 0 {
			return
		}
	}
}
