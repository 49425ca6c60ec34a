// Package logs reads the JSON log files the shim writes for a container
// (one {"log","stream","time"} object per line, rotated to path.1,
// path.2, ... when full): all of them in order, the last N entries, a time
// window, and following the live file until the container is done.
package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Entry is one log entry.
type Entry struct {
	// Stream is "stdout" or "stderr".
	Stream string
	Time   time.Time
	// Data is usually one line with its newline; a partial line (a
	// prompt, or a line over 16 KiB) has none.
	Data []byte
}

type jsonEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// Parse decodes one line of a log file.
func Parse(line []byte) (Entry, error) {
	var je jsonEntry
	if err := json.Unmarshal(bytes.TrimSuffix(line, []byte("\n")), &je); err != nil {
		return Entry{}, fmt.Errorf("log entry %.40q: %w", line, err)
	}
	return Entry{Stream: je.Stream, Time: je.Time, Data: []byte(je.Log)}, nil
}

// Files returns the log files of the log at path, oldest first: the
// rotated ones (path.N ... path.1) that exist, then path itself (even when
// it does not exist yet).
func Files(path string) []string {
	var rotated []string
	for i := 1; ; i++ {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Lstat(p); err != nil {
			break
		}
		rotated = append(rotated, p)
	}
	out := make([]string, 0, len(rotated)+1)
	for i := len(rotated) - 1; i >= 0; i-- {
		out = append(out, rotated[i])
	}
	return append(out, path)
}

// Remove deletes the log at path with its rotated files.
func Remove(path string) error {
	var errs []error
	for _, f := range Files(path) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
