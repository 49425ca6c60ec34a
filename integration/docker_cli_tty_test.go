package integration

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testutil/daemon"
	"github.com/berthd/berth/internal/testutil/require"
)

// terminal is a berth command running in a tmux pane of its own tmux
// server: a real terminal, so -it gets raw mode and window sizes.
type terminal struct {
	t    *testing.T
	tmux string
	sock string
}

// newTerminal runs `berth ARGS` in a width x height pane; when it ends the
// pane shows BERTH-EXIT=<its exit code>.
func newTerminal(t *testing.T, d *daemon.Daemon, width, height int, args ...string) *terminal {
	t.Helper()
	tm := &terminal{t: t, tmux: require.Binary(t, "tmux"), sock: fmt.Sprintf("berth-cli-%d-%d", os.Getpid(), time.Now().UnixNano())}
	quoted := make([]string, 0, len(args))
	for _, a := range args {
		quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	script := fmt.Sprintf("%s --address %s %s; echo BERTH-EXIT=$?; sleep 600", daemon.Binary(t, "berth"), d.Address, strings.Join(quoted, " "))
	tm.run("new-session", "-d", "-x", fmt.Sprint(width), "-y", fmt.Sprint(height), "-s", "s", script)
	t.Cleanup(func() { exec.Command(tm.tmux, "-L", tm.sock, "kill-server").Run() })
	return tm
}

func (tm *terminal) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command(tm.tmux, append([]string{"-L", tm.sock}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

// send types keys ("Enter", "C-d" and such are tmux key names).
func (tm *terminal) send(keys ...string) {
	tm.t.Helper()
	tm.run(append([]string{"send-keys", "-t", "s"}, keys...)...)
}

// screen is what the pane shows, lines joined by "\r\n" so that output
// can be matched as a terminal shows it.
func (tm *terminal) screen() string {
	out, _ := exec.Command(tm.tmux, "-L", tm.sock, "capture-pane", "-p", "-J", "-t", "s").Output()
	return strings.ReplaceAll(string(out), "\n", "\r\n")
}

func (tm *terminal) waitFor(want string) {
	tm.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(30 * time.Millisecond) {
		if strings.Contains(tm.screen(), want) {
			return
		}
	}
	tm.t.Fatalf("the terminal never showed %q:\n%s", want, tm.screen())
}

func TestInteractiveTerminal(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	term := newTerminal(t, d, 100, 30, "run", "-it", "--rm", "busybox", "sh")
	term.waitFor("/ # ")
	// Typed input is echoed before Enter: the prompt line is live.
	term.send("echo typed-so-f")
	term.waitFor("/ # echo typed-so-f")
	term.send("ar", "Enter")
	term.waitFor("typed-so-far\r\n")
	term.send("stty size; tty", "Enter")
	term.waitFor("30 100")
	term.waitFor("/dev/pts/0")
	// The window size follows the terminal's.
	term.run("resize-window", "-t", "s", "-x", "80", "-y", "20")
	term.send("stty size", "Enter")
	term.waitFor("20 80")
	// Ctrl-D ends the shell; its exit code is berth's.
	term.send("C-d")
	term.waitFor("BERTH-EXIT=0")

	// exec -it into a running container, exit code passed through.
	d.MustBerth("run", "-d", "--name", "box", "busybox", "sleep", "300")
	ex := newTerminal(t, d, 90, 25, "exec", "-it", "box", "sh")
	ex.waitFor("# ")
	ex.send("stty size; exit 4", "Enter")
	ex.waitFor("25 90")
	ex.waitFor("BERTH-EXIT=4")

	// Ctrl-P Ctrl-Q detaches; the shell runs on and takes a new attach.
	det := newTerminal(t, d, 100, 30, "run", "-it", "--name", "det", "busybox", "sh")
	det.waitFor("/ # ")
	det.send("C-p", "C-q")
	det.waitFor("BERTH-EXIT=0")
	if st := state(t, d, "det"); !st.Running {
		t.Fatalf("detached container: %+v", st)
	}
	again := newTerminal(t, d, 100, 30, "attach", "det")
	again.send("echo back-$((40+2))", "Enter")
	again.waitFor("back-42")
	again.send("exit 3", "Enter")
	again.waitFor("BERTH-EXIT=3")

	// -t without a terminal is refused.
	wantExit(t, d.BerthIn("", "run", "-it", "busybox", "sh"), 125, "not a TTY")
}

// TestRunStdinAndSignals: piped input with -i, and Ctrl-C (SIGINT to the
// berth process) forwarded to a foreground container without a terminal.
func TestRunStdinAndSignals(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	r := d.BerthIn("line one\nline two\n", "run", "-i", "--rm", "busybox", "sh", "-c", "wc -l; cat")
	if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "2" {
		t.Errorf("run -i: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	cmd := d.BerthCommand("run", "--rm", "--name", "sig", "busybox", "sh", "-c",
		`trap "echo got INT; exit 5" INT; echo ready; while true; do sleep 0.1; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(out)
	if line, _ := br.ReadString('\n'); line != "ready\n" {
		t.Fatalf("first line %q", line)
	}
	cmd.Process.Signal(syscall.SIGINT)
	rest, _ := io.ReadAll(br)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 || string(rest) != "got INT\n" {
		t.Errorf("after Ctrl-C: %v, output %q", err, rest)
	}
}

func TestAttachAndStartAttached(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	d.MustBerth("run", "-d", "-i", "--name", "cat", "busybox", "cat")
	cmd := d.BerthCommand("attach", "cat")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(in, "through attach")
	br := bufio.NewReader(out)
	if line, _ := br.ReadString('\n'); line != "through attach\n" {
		t.Errorf("attach echoed %q", line)
	}
	d.MustBerth("kill", "cat")
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 137 {
		t.Errorf("attach ended with %v, want exit 137", err)
	}
	// start -ai connects stdin to a stopped container and returns its
	// exit code.
	d.MustBerth("create", "-i", "--name", "rev", "busybox", "sh", "-c", "read x; echo got $x; exit 6")
	r := d.BerthIn("hello\n", "start", "-ai", "rev")
	if r.ExitCode != 6 || r.Stdout != "got hello\n" {
		t.Errorf("start -ai: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	wantExit(t, d.Berth("attach", "rev"), 1, "not running")
}
