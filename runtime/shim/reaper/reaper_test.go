package reaper

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test process becomes a subreaper and reaps its children with the
// reaper, as the shim does; the tests share one reaper.
var testReaper = func() *Reaper {
	if err := SetSubreaper(); err != nil {
		panic(err)
	}
	r := New()
	go r.Run(context.Background())
	return r
}()

func TestCommandsGetTheirOwnStatus(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("/bin/sh", "-c", "exit "+strconv.Itoa(i))
			ch, err := testReaper.Start(cmd)
			if err != nil {
				t.Error(err)
				return
			}
			if e := testReaper.Wait(cmd, ch); e.Status != i || e.Pid != cmd.Process.Pid {
				t.Errorf("command %d: exit %+v", i, e)
			}
		}()
	}
	wg.Wait()
}

func TestRunCommandCapturesOutput(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "echo hi; kill -TERM $$")
	var out strings.Builder
	cmd.Stdout = &out
	err := testReaper.RunCommand(cmd)
	var exitErr *ExitError
	if !errors.As(err, &exitErr) || exitErr.Status != 128+15 {
		t.Fatalf("error %v, want status 143", err)
	}
	if out.String() != "hi\n" {
		t.Fatalf("output %q", out.String())
	}
}

// An orphan reparented to the subreaper is reported on Exits, once.
func TestOrphanExitGoesToExits(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command("/bin/sh", "-c", "(sleep 0.2; exit 6) & echo $! > "+pidFile)
	if err := testReaper.RunCommand(cmd); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-testReaper.Exits():
			if e.Pid == cmd.Process.Pid {
				t.Fatal("a started command's exit went to Exits")
			}
			if e.Pid != pid {
				continue
			}
			if e.Status != 6 || e.Time.IsZero() {
				t.Fatalf("orphan exit %+v", e)
			}
			return
		case <-timeout:
			t.Fatal("orphan exit not reported")
		}
	}
}
