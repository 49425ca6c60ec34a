package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func bufferedGlobals(stdin string) (*globals, *bytes.Buffer, *bytes.Buffer) {
	var out, errw bytes.Buffer
	return &globals{address: "/x.sock", stdin: strings.NewReader(stdin), stdout: &out, stderr: &errw}, &out, &errw
}

func failOn(bad string) func(string) error {
	return func(a string) error {
		if a == bad {
			return fmt.Errorf("no such thing %q", a)
		}
		return nil
	}
}

func TestEachArgGoesOnAfterAFailure(t *testing.T) {
	g, out, errw := bufferedGlobals("")
	err := eachArg(g, []string{"a", "b", "c"}, failOn("b"))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || ee.Err != nil {
		t.Fatalf("err = %v, want a bare exit status 1", err)
	}
	if out.String() != "a\nc\n" || errw.String() != "berth: no such thing \"b\"\n" {
		t.Fatalf("stdout %q, stderr %q", out, errw)
	}
	if err := eachArg(g, []string{"a"}, failOn("b")); err != nil {
		t.Fatalf("all succeeded, got %v", err)
	}
}

func TestReportEachPrintsWhatEachReturns(t *testing.T) {
	g, out, _ := bufferedGlobals("")
	err := reportEach(g, []string{"x", "y"}, func(a string) (string, error) { return "code " + a, nil })
	if err != nil || out.String() != "code x\ncode y\n" {
		t.Fatalf("err %v, stdout %q", err, out)
	}
}

func TestCollectEachKeepsTheFound(t *testing.T) {
	g, out, errw := bufferedGlobals("")
	got, err := collectEach(g, []string{"1", "2", "3"}, func(a string) (int, error) {
		return len(a) * 10, failOn("2")(a)
	})
	if err == nil || len(got) != 2 || out.Len() != 0 || !strings.Contains(errw.String(), `"2"`) {
		t.Fatalf("got %v, err %v, stdout %q, stderr %q", got, err, out, errw)
	}
}

func TestEachArgQuietNamesTheFailedArgument(t *testing.T) {
	g, out, errw := bufferedGlobals("")
	err := eachArgQuiet(g, []string{"a", "b"}, failOn("a"))
	if err == nil || out.Len() != 0 || errw.String() != "berth: a: no such thing \"a\"\n" {
		t.Fatalf("err %v, stdout %q, stderr %q", err, out, errw)
	}
}

func TestPruneReports(t *testing.T) {
	var b bytes.Buffer
	printDeleted(&b, "Networks", nil)
	if b.Len() != 0 {
		t.Fatalf("nothing deleted printed %q", b.String())
	}
	printPruneReport(&b, "Volumes", []string{"v1", "v2"}, 2000)
	if want := "Deleted Volumes:\nv1\nv2\n\nTotal reclaimed space: 2kB\n"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
	b.Reset()
	printPruneReport(&b, "Containers", nil, 0)
	if want := "Total reclaimed space: 0B\n"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

func TestConfirmPrune(t *testing.T) {
	for answer, want := range map[string]bool{"y\n": true, " YES \n": true, "n\n": false, "": false, "yep\n": false} {
		g, out, _ := bufferedGlobals(answer)
		if got := confirmPrune(g, "all custom networks"); got != want {
			t.Errorf("answer %q: got %v", answer, got)
		}
		if !strings.HasPrefix(out.String(), "WARNING! This will remove all custom networks not used by at least one container.\n") {
			t.Errorf("warning %q", out)
		}
	}
}

// sliceStream serves messages then io.EOF, or err in place of EOF.
type sliceStream struct {
	msgs []string
	err  error
}

func (s *sliceStream) Recv() (string, error) {
	if len(s.msgs) == 0 {
		if s.err != nil {
			return "", s.err
		}
		return "", io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

func TestRecvEach(t *testing.T) {
	var got []string
	collect := func(m string) error { got = append(got, m); return nil }
	if err := recvEach(&sliceStream{msgs: []string{"a", "b"}}, collect); err != nil || strings.Join(got, "") != "ab" {
		t.Fatalf("err %v, got %v", err, got)
	}
	broken := errors.New("stream broke")
	if err := recvEach(&sliceStream{msgs: []string{"c"}, err: broken}, collect); !errors.Is(err, broken) {
		t.Fatalf("err %v, want %v", err, broken)
	}
	stop := errors.New("stop")
	if err := recvEach(&sliceStream{msgs: []string{"d", "e"}}, func(string) error { return stop }); err != stop {
		t.Fatalf("err %v, want f's error", err)
	}
}
