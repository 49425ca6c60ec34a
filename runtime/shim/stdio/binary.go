package stdio

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"github.com/berthd/berth/runtime/shim/reaper"
)

const (
	loggerReadyTimeout = 30 * time.Second
	loggerStopTimeout  = 12 * time.Second
)

// binaryLogger is a logging binary reading a process's output (binary://).
type binaryLogger struct {
	cmd    *exec.Cmd
	exited <-chan reaper.Exit
	reaper *reaper.Reaper
	done   chan struct{}
}

// startLogger starts the logging binary with pipes for stdout and stderr
// and hands their write ends to the runtime.
func (p *ProcessIO) startLogger(ctx context.Context, out output, cfg Config, env Env) error {
	var readEnds []*os.File
	for _, set := range []**os.File{&p.runtime.Stdout, &p.runtime.Stderr} {
		r, child, err := p.pipe(env, false)
		if err != nil {
			return err
		}
		*set = child
		readEnds = append(readEnds, r)
	}
	l, err := startBinaryLogger(ctx, out, env, readEnds[0], readEnds[1])
	if err != nil {
		return err
	}
	p.logger = l
	// The logger holds the read ends now.
	for _, r := range readEnds {
		r.Close()
	}
	return nil
}

func loggerArgs(out output) []string {
	keys := make([]string, 0, len(out.query))
	for k := range out.query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var args []string
	for _, k := range keys {
		args = append(args, k)
		if v := out.query[k]; len(v) > 0 && v[0] != "" {
			args = append(args, v[0])
		}
	}
	return args
}

func startBinaryLogger(ctx context.Context, out output, env Env, stdout, stderr *os.File) (*binaryLogger, error) {
	ready, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create logger ready pipe: %w", err)
	}
	defer ready.Close()
	cmd := exec.Command(out.path, loggerArgs(out)...)
	cmd.Env = []string{"CONTAINER_ID=" + env.ID, "CONTAINER_NAMESPACE=" + env.Namespace}
	cmd.ExtraFiles = []*os.File{stdout, stderr, readyW}
	l := &binaryLogger{cmd: cmd, reaper: env.Reaper, done: make(chan struct{})}
	if env.Reaper != nil {
		l.exited, err = env.Reaper.Start(cmd)
	} else {
		err = cmd.Start()
	}
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("start logging binary %s: %w", out.path, err)
	}
	go l.wait()
	if err := waitReady(ctx, ready); err != nil {
		l.stop()
		return nil, fmt.Errorf("logging binary %s: %w", out.path, err)
	}
	return l, nil
}

// waitReady waits for the logger to write to or close its ready pipe.
func waitReady(ctx context.Context, ready *os.File) error {
	res := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		_, err := ready.Read(b)
		if err == io.EOF {
			err = nil
		}
		res <- err
	}()
	t := time.NewTimer(loggerReadyTimeout)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C:
		return fmt.Errorf("not ready after %s", loggerReadyTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *binaryLogger) wait() {
	if l.reaper != nil {
		l.reaper.Wait(l.cmd, l.exited)
	} else {
		_ = l.cmd.Wait()
	}
	close(l.done)
}

// stop asks the logger to finish (SIGTERM) and kills it if it has not
// exited in time.
func (l *binaryLogger) stop() error {
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(loggerStopTimeout)
	defer t.Stop()
	select {
	case <-l.done:
		return nil
	case <-t.C:
	}
	if err := l.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill logging binary: %w", err)
	}
	<-l.done
	return nil
}
