package logs

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"
)

// Options choose what Read returns.
type Options struct {
	// Tail is how many entries to return from the end of the log (before
	// Since and Until apply); negative means all.
	Tail int64
	// Since and Until, when set, keep entries written in [Since, Until].
	Since, Until time.Time
	// Follow keeps reading what is written after the end of the log until
	// Done is closed (and what was written before that is read) or the
	// context ends.
	Follow bool
	Done   <-chan struct{}
	// FromEnd starts at the current end of the log: only what is written
	// from now on is returned (for attaching). Tail is then ignored.
	FromEnd bool
	// Ready, when set, is called once the log files are open: nothing
	// written after that is missed.
	Ready func()
}

// errStop ends a read early without an error (Until passed).
var errStop = errors.New("stop reading")

// Read calls fn with the entries of the log at path, oldest first. Lines
// that are not valid entries are skipped. It returns fn's first error.
func Read(ctx context.Context, path string, o Options, fn func(Entry) error) error {
	set, err := openFiles(path)
	if err != nil {
		return err
	}
	defer set.close()
	if o.Ready != nil {
		o.Ready()
	}
	r := &reader{o: o, fn: fn}
	idx, off := 0, int64(0)
	switch {
	case o.FromEnd:
		idx, off = len(set.files)-1, set.sizes[len(set.sizes)-1]
	case o.Tail >= 0:
		if idx, off, err = set.tailStart(o.Tail); err != nil {
			return err
		}
	}
	for i := idx; i < len(set.files)-1; i++ {
		if err := r.readFrom(set.files[i], off, true); err != nil {
			return r.result(err)
		}
		off = 0
	}
	live := set.files[len(set.files)-1]
	if live == nil {
		// The container has not written anything yet.
		if !o.Follow {
			return nil
		}
		return r.result(r.follow(ctx, path, nil, 0))
	}
	set.files[len(set.files)-1] = nil // follow owns it now
	if !o.Follow {
		defer live.Close()
		return r.result(r.readFrom(live, off, true))
	}
	return r.result(r.follow(ctx, path, live, off))
}

type reader struct {
	o  Options
	fn func(Entry) error
	// pending holds the start of a line the writer has not finished.
	pending []byte
	br      *bufio.Reader
}

func (r *reader) result(err error) error {
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// readFrom reads f from off to its end. A last line without its newline is
// kept in r.pending unless final, when it is dropped (a crash cut it).
func (r *reader) readFrom(f *os.File, off int64, final bool) error {
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	r.pending = r.pending[:0]
	_, err := r.readMore(f)
	if final {
		r.pending = r.pending[:0]
	}
	return err
}

// readMore reads what f holds after its current offset and reports how
// many bytes it got.
func (r *reader) readMore(f *os.File) (int64, error) {
	if r.br == nil {
		r.br = bufio.NewReaderSize(f, 64<<10)
	} else {
		r.br.Reset(f)
	}
	br := r.br
	var n int64
	for {
		line, err := br.ReadSlice('\n')
		n += int64(len(line))
		switch {
		case err == nil:
			if len(r.pending) > 0 {
				r.pending = append(r.pending, line...)
				line = r.pending
			}
			if err := r.emit(line); err != nil {
				return n, err
			}
			r.pending = r.pending[:0]
		case errors.Is(err, bufio.ErrBufferFull):
			r.pending = append(r.pending, line...)
		case errors.Is(err, io.EOF):
			r.pending = append(r.pending, line...)
			return n, nil
		default:
			return n, err
		}
	}
}

func (r *reader) emit(line []byte) error {
	e, err := Parse(line)
	if err != nil {
		slog.Debug("skip log line", "error", err)
		return nil
	}
	if !r.o.Since.IsZero() && e.Time.Before(r.o.Since) {
		return nil
	}
	if !r.o.Until.IsZero() && e.Time.After(r.o.Until) {
		return errStop
	}
	return r.fn(e)
}

// fileSet is the log's files opened at one moment, oldest first; the last
// is the live file, nil when it does not exist yet.
type fileSet struct {
	files []*os.File
	sizes []int64
}

func openFiles(path string) (*fileSet, error) {
	s := &fileSet{}
	for _, p := range Files(path) {
		f, err := os.Open(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Rotated away between listing and opening, or not
				// written yet (the live file).
				if p == path {
					s.files = append(s.files, nil)
					s.sizes = append(s.sizes, 0)
				}
				continue
			}
			s.close()
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			s.close()
			return nil, err
		}
		s.files = append(s.files, f)
		s.sizes = append(s.sizes, fi.Size())
	}
	return s, nil
}

func (s *fileSet) close() {
	for _, f := range s.files {
		if f != nil {
			f.Close()
		}
	}
}

// tailStart finds where the last n complete lines begin: the index of the
// file and the offset in it. It scans backwards, so its cost follows n,
// not the size of the log. A partial line at the very end is not counted.
func (s *fileSet) tailStart(n int64) (int, int64, error) {
	buf := make([]byte, 32<<10)
	need := n
	foundEnd := false // passed the newline that ends the last line
	for i := len(s.files) - 1; i >= 0; i-- {
		f := s.files[i]
		if f == nil {
			continue
		}
		for end := s.sizes[i]; end > 0; {
			start := max(0, end-int64(len(buf)))
			chunk := buf[:end-start]
			if _, err := f.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
				return 0, 0, err
			}
			for j := len(chunk) - 1; j >= 0; j-- {
				if chunk[j] != '\n' {
					continue
				}
				if foundEnd {
					need--
				}
				foundEnd = true
				if need == 0 {
					return i, start + int64(j) + 1, nil
				}
			}
			end = start
		}
	}
	return 0, 0, nil
}
