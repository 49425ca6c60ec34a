package shim

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// setupLog points the default logger at the bundle's log FIFO, which the
// daemon reads into its own log as containerd does, or else at shim.log in
// the bundle. It returns a function that closes the log.
func setupLog(f *flags) func() {
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	w, closeLog := openLog(f.bundle)
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	slog.SetDefault(slog.New(h).With("namespace", f.namespace, "shim", f.id))
	return closeLog
}

func openLog(bundle string) (io.Writer, func()) {
	fifo := filepath.Join(bundle, LogFifo)
	if fi, err := os.Lstat(fifo); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
		// Non-blocking: with no reader the open fails (and the file is used),
		// and a full pipe drops lines instead of stalling the shim.
		fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			return fifoWriter(fd), func() { unix.Close(fd) }
		}
	}
	f, err := os.OpenFile(filepath.Join(bundle, LogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return io.Discard, func() {}
	}
	return f, func() { f.Close() }
}

// fifoWriter writes log lines to a non-blocking FIFO and drops what does
// not fit, or everything while the daemon is not reading: the shim's own
// log must never hold up a container.
type fifoWriter int

func (w fifoWriter) Write(p []byte) (int, error) {
	for done := 0; done < len(p); {
		n, err := unix.Write(int(w), p[done:])
		if err != nil || n <= 0 {
			break
		}
		done += n
	}
	return len(p), nil
}
