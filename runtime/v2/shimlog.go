package v2

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// maxShimLogLine bounds one line of a shim's log; longer lines are split.
const maxShimLogLine = 8 << 10

// copyShimLog opens the bundle's log FIFO for reading and writing (so it
// never sees end of file while shims come and go, and shims never block
// opening it) and copies each line into berthd's log with the task's
// namespace and id. The returned function stops the copy.
func copyShimLog(b *bundle, ns, id string) (func(), error) {
	path := filepath.Join(b.path, LogFifo)
	if err := unix.Mkfifo(path, 0o600); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("create shim log FIFO: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open shim log FIFO: %w", err)
	}
	go func() {
		// Lines longer than the buffer arrive in pieces, each logged:
		// the FIFO must keep draining, or a shim writing to it blocks.
		r := bufio.NewReaderSize(f, maxShimLogLine)
		for {
			line, _, err := r.ReadLine()
			if err != nil {
				return
			}
			logShimLine(ns, id, string(line))
		}
	}()
	return sync.OnceFunc(func() { f.Close() }), nil
}

// logShimLine re-logs one line of a shim's log (logfmt from berth's shim
// and containerd's, or anything else): warnings and errors at their level,
// the rest (a few lines per container) at debug.
func logShimLine(ns, id, line string) {
	line = strings.TrimSpace(line)
	if line == "" {
		return
	}
	level := slog.LevelDebug
	switch {
	case strings.Contains(line, "level=error"), strings.Contains(line, "level=ERROR"),
		strings.Contains(line, "level=fatal"), strings.Contains(line, "level=panic"):
		level = slog.LevelError
	case strings.Contains(line, "level=warn"), strings.Contains(line, "level=WARN"):
		level = slog.LevelWarn
	}
	slog.Log(context.Background(), level, "shim", "namespace", ns, "id", id, "log", line)
}
