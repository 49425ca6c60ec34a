package logs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var base = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// line is one entry as the shim writes it.
func line(t *testing.T, i int, stream, text string) string {
	t.Helper()
	b, err := json.Marshal(jsonEntry{Log: text, Stream: stream, Time: base.Add(time.Duration(i) * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func collect(t *testing.T, path string, o Options) []string {
	t.Helper()
	var out []string
	err := Read(context.Background(), path, o, func(e Entry) error {
		out = append(out, e.Stream+":"+string(e.Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rotatedLog writes entries 0..8 over three files (3 each) and a partial
// line at the end of the live file.
func rotatedLog(t *testing.T) string {
	dir := t.TempDir()
	path := filepath.Join(dir, "c-json.log")
	for f, name := range []string{path + ".2", path + ".1", path} {
		var b strings.Builder
		for i := f * 3; i < f*3+3; i++ {
			stream := "stdout"
			if i%2 == 1 {
				stream = "stderr"
			}
			b.WriteString(line(t, i, stream, fmt.Sprintf("l%d\n", i)))
		}
		appendFile(t, name, b.String())
	}
	appendFile(t, path, `{"log":"unfinis`)
	return path
}

func TestReadAllInOrder(t *testing.T) {
	path := rotatedLog(t)
	got := collect(t, path, Options{Tail: -1})
	if len(got) != 9 || got[0] != "stdout:l0\n" || got[1] != "stderr:l1\n" || got[8] != "stdout:l8\n" {
		t.Fatalf("entries %q", got)
	}
}

func TestTail(t *testing.T) {
	path := rotatedLog(t)
	for _, tc := range []struct {
		n    int64
		want int
	}{{0, 0}, {1, 1}, {3, 3}, {4, 4}, {7, 7}, {9, 9}, {50, 9}} {
		got := collect(t, path, Options{Tail: tc.n})
		if len(got) != tc.want {
			t.Errorf("tail %d: %d entries %q", tc.n, len(got), got)
			continue
		}
		if tc.want > 0 && got[len(got)-1] != "stdout:l8\n" {
			t.Errorf("tail %d ends with %q", tc.n, got[len(got)-1])
		}
		if tc.want > 0 && got[0] != fmt.Sprintf("%s:l%d\n", map[bool]string{true: "stderr", false: "stdout"}[(9-tc.want)%2 == 1], 9-tc.want) {
			t.Errorf("tail %d starts with %q", tc.n, got[0])
		}
	}
}

func TestTailLongLog(t *testing.T) {
	// More than one backwards read buffer.
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 5000 {
		b.WriteString(line(t, i, "stdout", fmt.Sprintf("entry %d\n", i)))
	}
	appendFile(t, path, b.String())
	got := collect(t, path, Options{Tail: 1234})
	if len(got) != 1234 || got[0] != "stdout:entry 3766\n" {
		t.Fatalf("%d entries, first %q", len(got), got[0])
	}
}

func TestSinceUntil(t *testing.T) {
	path := rotatedLog(t)
	got := collect(t, path, Options{Tail: -1, Since: base.Add(2 * time.Second), Until: base.Add(5 * time.Second)})
	if len(got) != 4 || got[0] != "stdout:l2\n" || got[3] != "stderr:l5\n" {
		t.Fatalf("entries %q", got)
	}
}

func TestMissingLogIsEmpty(t *testing.T) {
	if got := collect(t, filepath.Join(t.TempDir(), "none"), Options{Tail: -1}); len(got) != 0 {
		t.Fatalf("entries %q", got)
	}
}

func TestSkipsBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	appendFile(t, path, line(t, 0, "stdout", "a\n")+"not json\n"+line(t, 1, "stdout", "b\n"))
	if got := collect(t, path, Options{Tail: -1}); len(got) != 2 {
		t.Fatalf("entries %q", got)
	}
}

// follower runs a following Read in the background.
type follower struct {
	mu   sync.Mutex
	got  []string
	done chan struct{}
	err  chan error
}

func follow(t *testing.T, path string, o Options) *follower {
	fw := &follower{done: make(chan struct{}), err: make(chan error, 1)}
	o.Follow, o.Done = true, fw.done
	go func() {
		fw.err <- Read(context.Background(), path, o, func(e Entry) error {
			fw.mu.Lock()
			fw.got = append(fw.got, string(e.Data))
			fw.mu.Unlock()
			return nil
		})
	}()
	return fw
}

func (fw *follower) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		fw.mu.Lock()
		l := len(fw.got)
		fw.mu.Unlock()
		if l >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	t.Fatalf("follower has %d entries %q, want %d", len(fw.got), fw.got, n)
}

func (fw *follower) finish(t *testing.T) []string {
	t.Helper()
	close(fw.done)
	select {
	case err := <-fw.err:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follower did not end after Done")
	}
	return fw.got
}

func TestFollowAcrossRotationAndPartialLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	fw := follow(t, path, Options{Tail: -1}) // before the file exists
	appendFile(t, path, line(t, 0, "stdout", "first\n"))
	fw.waitFor(t, 1)
	// A line written in two pieces is returned once, whole.
	full := line(t, 1, "stdout", "second\n")
	appendFile(t, path, full[:10])
	time.Sleep(20 * time.Millisecond)
	appendFile(t, path, full[10:])
	fw.waitFor(t, 2)
	// Rotate as the shim does: rename, then a new file.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, line(t, 2, "stderr", "third\n"))
	fw.waitFor(t, 3)
	// Truncation in place by some other writer. A new entry shorter than
	// what was read makes it detectable whenever the follower looks: one
	// as long could be taken for growth, which is why the shim replaces
	// its file by rename instead of truncating it.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, line(t, 3, "stdout", "4\n"))
	fw.waitFor(t, 4)
	appendFile(t, path, line(t, 4, "stdout", "last, before done\n"))
	got := fw.finish(t)
	want := []string{"first\n", "second\n", "third\n", "4\n", "last, before done\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("followed %q, want %q", got, want)
	}
}

func TestFollowFromEnd(t *testing.T) {
	path := rotatedLog(t)
	fw := follow(t, path, Options{FromEnd: true})
	time.Sleep(20 * time.Millisecond)
	appendFile(t, path, "hed\"}\n") // completes the partial line that predates us
	appendFile(t, path, line(t, 20, "stdout", "new\n"))
	fw.waitFor(t, 1)
	got := fw.finish(t)
	if len(got) != 1 || got[0] != "new\n" {
		t.Fatalf("followed %q", got)
	}
}

func TestFollowEndsWithContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- Read(ctx, path, Options{Tail: -1, Follow: true, Done: make(chan struct{})}, func(Entry) error { return nil })
	}()
	cancel()
	select {
	case err := <-errc:
		if err != context.Canceled {
			t.Fatalf("err %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end with its context")
	}
}

func TestRemove(t *testing.T) {
	path := rotatedLog(t)
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if got := Files(path); len(got) != 1 {
		t.Fatalf("files left: %v", got)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("live file left: %v", err)
	}
}
