package stdio

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
)

type outputKind int

const (
	kindFIFO outputKind = iota
	kindLogFile
	kindBinary
)

// output is where a process's output goes.
type output struct {
	kind outputKind
	path string
	// log settings, for kindLogFile
	maxSize  int64
	maxFiles int
	raw      bool
	// flushPartial writes the unfinished line a write ends with at once,
	// as an entry without its newline (partial=flush), so a reader
	// following the log sees prompts and echoed keystrokes.
	flushPartial bool
	// query of a binary:// URI
	query url.Values
}

// parseOutput reads the Stdout field of a create or exec request.
func parseOutput(stdout string) (output, error) {
	if stdout == "" || !strings.Contains(stdout, "://") {
		return output{kind: kindFIFO, path: stdout}, nil
	}
	u, err := url.Parse(stdout)
	if err != nil {
		return output{}, fmt.Errorf("stdout URI %q: %v: %w", stdout, err, errdefs.ErrInvalidArgument)
	}
	if u.Host != "" || !filepath.IsAbs(u.Path) {
		return output{}, fmt.Errorf("stdout URI %q: want %s:///absolute/path: %w", stdout, u.Scheme, errdefs.ErrInvalidArgument)
	}
	switch u.Scheme {
	case "fifo":
		return output{kind: kindFIFO, path: u.Path}, nil
	case "file":
		return parseLogFileURI(u)
	case "binary":
		return output{kind: kindBinary, path: u.Path, query: u.Query()}, nil
	}
	return output{}, fmt.Errorf("stdout URI %q: unknown scheme %q (want fifo, file or binary): %w", stdout, u.Scheme, errdefs.ErrInvalidArgument)
}

func parseLogFileURI(u *url.URL) (output, error) {
	o := output{kind: kindLogFile, path: u.Path, maxFiles: 1}
	for key, values := range u.Query() {
		v := values[len(values)-1]
		var err error
		switch key {
		case "max-size":
			o.maxSize, err = parseSize(v)
		case "max-file":
			o.maxFiles, err = strconv.Atoi(v)
			if err == nil && o.maxFiles < 1 {
				err = fmt.Errorf("must be at least 1")
			}
		case "format":
			switch v {
			case "json":
			case "raw":
				o.raw = true
			default:
				err = fmt.Errorf("want json or raw")
			}
		case "partial":
			switch v {
			case "buffer":
			case "flush":
				o.flushPartial = true
			default:
				err = fmt.Errorf("want buffer or flush")
			}
		default:
			err = fmt.Errorf("unknown option (want max-size, max-file, format or partial)")
		}
		if err != nil {
			return output{}, fmt.Errorf("log URI %q: %s=%q: %v: %w", u.Redacted(), key, v, err, errdefs.ErrInvalidArgument)
		}
	}
	return o, nil
}

// parseSize reads a byte count with an optional k, m or g suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch strings.ToLower(s[len(s)-min(len(s), 1):]) {
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a byte count such as 10485760 or 10m")
	}
	return n * mult, nil
}

// open opens the destination of one output stream ("stdout" or "stderr").
func (o output) open(ctx context.Context, stream string) (io.WriteCloser, error) {
	switch o.kind {
	case kindLogFile:
		return openLogStream(o, stream)
	case kindFIFO:
		return openFIFOOutput(ctx, o.path)
	}
	return nil, fmt.Errorf("output kind %d has no writer", o.kind)
}

// openFIFOOutput opens the client's FIFO (or an existing regular file) for
// a stream. A FIFO is opened read-write, as containerd's shim holds both
// ends: the open never blocks, and writes never fail with EPIPE while the
// client is away; they wait for it once the pipe buffer is full.
func openFIFOOutput(ctx context.Context, path string) (io.WriteCloser, error) {
	isFIFO, err := fifo.IsFifo(path)
	if err != nil {
		return nil, fmt.Errorf("open output %s: %w", path, err)
	}
	if !isFIFO {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, fmt.Errorf("open output %s: %w", path, err)
		}
		return f, nil
	}
	f, err := fifo.OpenFifo(ctx, path, syscall.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open output fifo %s: %w", path, err)
	}
	return f, nil
}
