package stdio

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// maxLine is the longest log line kept in one entry; longer lines are split
// into partial entries without a trailing newline, as Docker does.
const maxLine = 16 << 10

// logFile is one rotated log file, shared by every stream that names its
// path.
type logFile struct {
	path     string
	maxSize  int64
	maxFiles int

	mu     sync.Mutex
	f      *os.File
	size   int64
	refs   int
	failed bool // a write error was logged; keep quiet until one succeeds
}

var (
	logFilesMu sync.Mutex
	logFiles   = map[string]*logFile{}
)

// acquireLogFile opens the log file of o, or shares the one already open at
// the same path (whose rotation settings then apply).
func acquireLogFile(o output) (*logFile, error) {
	logFilesMu.Lock()
	defer logFilesMu.Unlock()
	if lf, ok := logFiles[o.path]; ok {
		lf.refs++
		return lf, nil
	}
	if err := os.MkdirAll(filepath.Dir(o.path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat log file: %w", err)
	}
	lf := &logFile{path: o.path, maxSize: o.maxSize, maxFiles: o.maxFiles, f: f, size: fi.Size(), refs: 1}
	logFiles[o.path] = lf
	return lf, nil
}

func (l *logFile) release() error {
	logFilesMu.Lock()
	defer logFilesMu.Unlock()
	l.refs--
	if l.refs > 0 {
		return nil
	}
	delete(logFiles, l.path)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// write appends one entry, rotating first if the entry would take the file
// past its size limit. Errors are logged once and dropped: a full disk must
// not stop the container, whose output would back up into its pipe.
func (l *logFile) write(entry []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxSize > 0 && l.size > 0 && l.size+int64(len(entry)) > l.maxSize {
		if err := l.rotate(); err != nil {
			l.report(err)
			return
		}
	}
	n, err := l.f.Write(entry)
	l.size += int64(n)
	if err != nil {
		l.report(fmt.Errorf("write log file %s: %w", l.path, err))
		return
	}
	l.failed = false
}

func (l *logFile) report(err error) {
	if !l.failed {
		slog.Error("container log entry dropped", "error", err)
	}
	l.failed = true
}

// rotate shifts path.N-1 ... path.1 up by one, dropping the oldest, moves the
// live file to path.1 and starts an empty one. With one file allowed, an
// empty file replaces the live one by rename rather than truncating it in
// place: a reader following the log sees the path change files, which it
// cannot miss, whereas a truncation followed at once by new output looks
// like a file that only grew.
func (l *logFile) rotate() error {
	if l.maxFiles <= 1 {
		return l.replace()
	}
	for i := l.maxFiles - 1; i > 1; i-- {
		older := l.path + "." + strconv.Itoa(i)
		newer := l.path + "." + strconv.Itoa(i-1)
		if err := os.Rename(newer, older); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate log file %s: %w", newer, err)
		}
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("rotate log file %s: %w", l.path, err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("reopen log file %s: %w", l.path, err)
	}
	l.f.Close()
	l.f = f
	l.size = 0
	return nil
}

// replace swaps the live file for an empty one atomically.
func (l *logFile) replace() error {
	tmp := l.path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("replace log file %s: %w", l.path, err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("replace log file %s: %w", l.path, err)
	}
	l.f.Close()
	l.f = f
	l.size = 0
	return nil
}

// logStream is one stream's writer into a log file: it cuts the output into
// lines and writes each as a JSON entry, or passes bytes through for the raw
// format.
type logStream struct {
	lf           *logFile
	stream       string
	raw          bool
	flushPartial bool
	line         []byte
	entry        []byte
}

func openLogStream(o output, stream string) (*logStream, error) {
	lf, err := acquireLogFile(o)
	if err != nil {
		return nil, fmt.Errorf("log URI file://%s: %w", o.path, err)
	}
	return &logStream{lf: lf, stream: stream, raw: o.raw, flushPartial: o.flushPartial}, nil
}

// Write never fails, so the copy feeding it keeps draining the process.
func (s *logStream) Write(p []byte) (int, error) {
	if s.raw {
		s.lf.write(p)
		return len(p), nil
	}
	n := len(p)
	for len(p) > 0 {
		room := maxLine - len(s.line)
		chunk := p[:min(len(p), room)]
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			s.line = append(s.line, chunk[:i+1]...)
			p = p[i+1:]
			s.flush()
			continue
		}
		s.line = append(s.line, chunk...)
		p = p[len(chunk):]
		if len(s.line) >= maxLine {
			s.flush()
		}
	}
	if s.flushPartial {
		s.flush()
	}
	return n, nil
}

func (s *logStream) flush() {
	if len(s.line) == 0 {
		return
	}
	s.entry = appendEntry(s.entry[:0], s.line, s.stream, time.Now())
	s.lf.write(s.entry)
	s.line = s.line[:0]
}

// Close writes a last partial line and releases the file.
func (s *logStream) Close() error {
	s.flush()
	return s.lf.release()
}

// appendEntry appends {"log":...,"stream":...,"time":...} and a newline.
func appendEntry(b, msg []byte, stream string, t time.Time) []byte {
	b = append(b, `{"log":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"stream":"`...)
	b = append(b, stream...)
	b = append(b, `","time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, "\"}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; bytes that are not UTF-8
// become U+FFFD, as encoding/json does.
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
