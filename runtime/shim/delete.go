package shim

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthd/berth/runtime/shim/task"
)

// deleteBundle cleans up after a shim that is gone: it removes the
// container from the runtime (killing what is left of it), unmounts the
// rootfs, removes a dead shim's socket and prints a DeleteResponse with
// status 137, as the container was killed.
func deleteBundle(f *flags) error {
	slog.SetDefault(stderrLogger(f.debug))
	ctx := context.Background()
	opts, err := task.ReadOptions(f.bundle)
	if err != nil {
		return err
	}
	rt := task.NewRuntime(opts, DefaultRuntimeRoot(f.address), f.namespace, f.bundle, nil)
	if err := rt.Delete(ctx, f.id, true); err != nil && !errdefs.IsNotFound(err) {
		slog.Warn("remove container from runtime", "id", f.id, "error", err)
	}
	if err := task.UnmountRootfs(f.bundle); err != nil {
		slog.Warn("unmount rootfs", "id", f.id, "error", err)
	}
	// The socket of a killed shim stays behind; a live one (another
	// container of the group still runs) is left alone.
	if sock, err := readAddress(f.bundle); err == nil && !canConnect(sock) {
		if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
			slog.Warn("remove shim socket", "socket", sock, "error", err)
		}
	}
	pid := 0
	if data, err := os.ReadFile(filepath.Join(f.bundle, task.InitPidFile)); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	data, err := proto.Marshal(&taskapi.DeleteResponse{
		Pid:        uint32(pid),
		ExitStatus: 128 + uint32(syscall.SIGKILL),
		ExitedAt:   timestamppb.New(time.Now()),
	})
	if err != nil {
		return fmt.Errorf("encode delete response: %w", err)
	}
	_, err = os.Stdout.Write(data)
	return err
}
