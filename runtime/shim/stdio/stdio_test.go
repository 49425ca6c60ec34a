package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestParseOutput(t *testing.T) {
	for _, c := range []struct {
		in   string
		want output
		err  bool
	}{
		{in: "/run/fifo/stdout", want: output{kind: kindFIFO, path: "/run/fifo/stdout"}},
		{in: "fifo:///run/x", want: output{kind: kindFIFO, path: "/run/x"}},
		{in: "file:///var/log/c.log", want: output{kind: kindLogFile, path: "/var/log/c.log", maxFiles: 1}},
		{in: "file:///l?max-size=10m&max-file=3", want: output{kind: kindLogFile, path: "/l", maxSize: 10 << 20, maxFiles: 3}},
		{in: "file:///l?max-size=4096&format=raw", want: output{kind: kindLogFile, path: "/l", maxSize: 4096, maxFiles: 1, raw: true}},
		{in: "file:///l?max-size=ten", err: true},
		{in: "file:///l?max-file=0", err: true},
		{in: "file:///l?format=xml", err: true},
		{in: "file:///l?colour=red", err: true},
		{in: "file://relative/path", err: true},
		{in: "syslog:///dev/log", err: true},
	} {
		got, err := parseOutput(c.in)
		if c.err {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("%s: error %v, want invalid argument", c.in, err)
			}
			continue
		}
		if err != nil || got.kind != c.want.kind || got.path != c.want.path || got.maxSize != c.want.maxSize ||
			got.maxFiles != c.want.maxFiles || got.raw != c.want.raw {
			t.Errorf("%s: got %+v %v, want %+v", c.in, got, err, c.want)
		}
	}
}

func TestAppendEntry(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	msg := []byte("tab\tquote\" back\\ ctl\x01 <html> \xff bad utf8 é \u2028\n")
	line := appendEntry(nil, msg, "stderr", at)
	var e struct{ Log, Stream, Time string }
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	want := strings.ToValidUTF8(string(msg), "\ufffd")
	if e.Log != want || e.Stream != "stderr" || e.Time != "2024-05-06T07:08:09.123456789Z" {
		t.Fatalf("entry %+v from %s", e, line)
	}
	if line[len(line)-1] != '\n' || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("entry is not one line: %q", line)
	}
}

func readEntries(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]string
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func TestLogStreamSplitsLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := openLogStream(output{kind: kindLogFile, path: path, maxFiles: 1}, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", maxLine+10)
	for _, chunk := range []string{"one\ntw", "o\n", long, "\nlast without newline"} {
		w.Write([]byte(chunk))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var logs []string
	for _, e := range readEntries(t, path) {
		logs = append(logs, e["log"])
	}
	want := []string{"one\n", "two\n", long[:maxLine], long[maxLine:] + "\n", "last without newline"}
	if strings.Join(logs, "|") != strings.Join(want, "|") {
		t.Fatalf("entries %q", logs)
	}
}

func TestLogFileRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	o := output{kind: kindLogFile, path: path, maxSize: 500, maxFiles: 3}
	out, err := openLogStream(o, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	errs, err := openLogStream(o, "stderr") // shares the file
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		fmt.Fprintf(out, "line %d\n", i)
	}
	errs.Write([]byte("the end\n"))
	out.Close()
	errs.Close()
	var all []map[string]string
	for _, p := range []string{path + ".2", path + ".1", path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 500 {
			t.Fatalf("%s has %d bytes", p, fi.Size())
		}
		all = append(all, readEntries(t, p)...)
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Fatalf("fourth file: %v", err)
	}
	last := all[len(all)-1]
	if last["log"] != "the end\n" || last["stream"] != "stderr" {
		t.Fatalf("last entry %v", last)
	}
	if prev := all[len(all)-2]; prev["log"] != "line 99\n" {
		t.Fatalf("entry before last %v", prev)
	}
	if len(logFiles) != 0 {
		t.Fatalf("log files still registered: %v", logFiles)
	}
}

func TestLogFileTruncatesWithOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := openLogStream(output{kind: kindLogFile, path: path, maxSize: 200, maxFiles: 1, raw: true}, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		fmt.Fprintf(w, "raw %02d\n", i)
	}
	w.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 200 || !bytes.HasSuffix(data, []byte("raw 49\n")) {
		t.Fatalf("log file %q", data)
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Fatalf("max-file=1 kept a backup: %v", err)
	}
}

// TestPipesToFIFOs runs a process with FIFO stdio as the runtime would: the
// process's ends of the pipes are its stdio.
func TestPipesToFIFOs(t *testing.T) {
	dir := t.TempDir()
	paths := map[string]string{}
	for _, n := range []string{"in", "out", "err"} {
		paths[n] = filepath.Join(dir, n)
		if err := syscall.Mkfifo(paths[n], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	outCh, errCh := readFIFO(paths["out"]), readFIFO(paths["err"])
	pio, err := NewPipes(ctx, Config{Stdin: paths["in"], Stdout: paths["out"], Stderr: paths["err"]}, Env{ID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer pio.Close()
	rt := pio.Runtime()
	proc, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "while read l; do echo o$l; echo e$l >&2; done"},
		&os.ProcAttr{Files: []*os.File{rt.Stdin, rt.Stdout, rt.Stderr}})
	if err != nil {
		t.Fatal(err)
	}
	pio.CloseChildEnds()
	in, err := os.OpenFile(paths["in"], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	in.WriteString("1\n2\n")
	in.Close()
	if err := pio.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if _, err := proc.Wait(); err != nil {
		t.Fatal(err)
	}
	if !pio.Wait(10 * time.Second) {
		t.Fatal("output copies did not finish")
	}
	if got := <-outCh; got != "o1\no2\n" {
		t.Fatalf("stdout %q", got)
	}
	if got := <-errCh; got != "e1\ne2\n" {
		t.Fatalf("stderr %q", got)
	}
}

func readFIFO(path string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		f, err := os.Open(path)
		if err != nil {
			ch <- err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		ch <- string(b)
	}()
	return ch
}

// TestBinaryLogger runs this test binary as a logging binary (see
// TestLoggerHelper) through a binary:// URI.
func TestBinaryLogger(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	uri := "binary://" + self + "?-test.run=^TestLoggerHelper$&logdir=" + dir
	pio, err := NewPipes(context.Background(), Config{Stdout: uri, Stderr: uri}, Env{ID: "ctr1", Namespace: "ns1"})
	if err != nil {
		t.Fatal(err)
	}
	rt := pio.Runtime()
	proc, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "echo to-out; echo to-err >&2"},
		&os.ProcAttr{Files: []*os.File{nil, rt.Stdout, rt.Stderr}})
	if err != nil {
		t.Fatal(err)
	}
	pio.CloseChildEnds()
	proc.Wait()
	// Close stops the logger once it read everything (it exits at end of
	// input, before the SIGTERM matters).
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(dir, "done"))
		if len(data) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := pio.Close(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"stdout": "to-out\n", "stderr": "to-err\n", "env": "ctr1 ns1"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(data) != want {
			t.Errorf("logger %s: %q %v, want %q", name, data, err, want)
		}
	}
}

// TestLoggerHelper is the logging binary of TestBinaryLogger; it does
// nothing unless started by the shim's logger code.
func TestLoggerHelper(t *testing.T) {
	if os.Getenv("CONTAINER_ID") == "" {
		t.Skip("helper process for TestBinaryLogger")
	}
	args := os.Args
	dir := args[len(args)-1]
	os.WriteFile(filepath.Join(dir, "env"), []byte(os.Getenv("CONTAINER_ID")+" "+os.Getenv("CONTAINER_NAMESPACE")), 0o600)
	ready := os.NewFile(5, "ready")
	ready.Close()
	done := make(chan struct{}, 2)
	for fd, name := range map[uintptr]string{3: "stdout", 4: "stderr"} {
		f := os.NewFile(fd, name)
		go func() {
			b, _ := io.ReadAll(f)
			os.WriteFile(filepath.Join(dir, name), b, 0o600)
			done <- struct{}{}
		}()
	}
	<-done
	<-done
	os.WriteFile(filepath.Join(dir, "done"), []byte("yes"), 0o600)
	os.Exit(0)
}

func TestLogStreamFlushesPartialLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	o, err := parseOutput("file://" + path + "?partial=flush")
	if err != nil {
		t.Fatal(err)
	}
	w, err := openLogStream(o, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []string{"/ # ", "ls\n", "a\nb"} {
		w.Write([]byte(chunk))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var logs []string
	for _, e := range readEntries(t, path) {
		logs = append(logs, e["log"])
	}
	want := []string{"/ # ", "ls\n", "a\n", "b"}
	if strings.Join(logs, "|") != strings.Join(want, "|") {
		t.Fatalf("entries %q, want %q", logs, want)
	}
	if _, err := parseOutput("file://" + path + "?partial=sometimes"); err == nil {
		t.Fatal("partial=sometimes accepted")
	}
}
