package oci

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxEnvFile bounds an env file: the kernel caps a process' arguments and
// environment together at a few MiB anyway.
const maxEnvFile = 4 << 20

// ReadEnvFile reads a docker --env-file; see ParseEnvFile.
func ReadEnvFile(name string, lookup func(string) (string, bool)) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open env file: %w", err)
	}
	defer f.Close()
	env, err := ParseEnvFile(f, lookup)
	if err != nil {
		return nil, fmt.Errorf("env file %s: %w", name, err)
	}
	return env, nil
}

// ParseEnvFile parses the docker --env-file format: one VAR=value per line,
// the value taken verbatim (no quote removal, trailing spaces kept);
// leading whitespace and blank or '#' lines are skipped; a line with only
// VAR takes its value from lookup (os.LookupEnv in the CLI) and is dropped
// if lookup has none or is nil. A name with whitespace, an empty name,
// invalid UTF-8 or more than 4 MiB are ErrInvalidArgument.
func ParseEnvFile(r io.Reader, lookup func(string) (string, bool)) ([]string, error) {
	var env []string
	lr := &io.LimitedReader{R: r, N: maxEnvFile + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 4096), maxEnvFile)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Bytes()
		if n == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\xEF\xBB\xBF"))
		}
		if !utf8.Valid(raw) {
			return nil, invalid("line %d is not valid UTF-8", n)
		}
		line := strings.TrimLeftFunc(string(raw), unicode.IsSpace)
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, hasValue := strings.Cut(line, "=")
		if name == "" {
			return nil, invalid("line %d has no variable name", n)
		}
		if strings.ContainsFunc(name, unicode.IsSpace) {
			return nil, invalid("line %d: variable name %q holds whitespace", n, name)
		}
		if hasValue {
			env = append(env, name+"="+value)
			continue
		}
		if lookup == nil {
			continue
		}
		if v, ok := lookup(name); ok {
			env = append(env, name+"="+v)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	// A line longer than the limit also means the file is.
	if lr.N == 0 || sc.Err() != nil {
		return nil, invalid("env file is larger than %d bytes", maxEnvFile)
	}
	return env, nil
}
