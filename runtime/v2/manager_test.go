package v2

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthd/berth/core/namespaces"
)

func TestBinaryName(t *testing.T) {
	for runtime, want := range map[string]string{
		"io.containerd.runc.v2":  "containerd-shim-runc-v2",
		"io.berth.runc.v2":       "berth-shim-runc-v2",
		"io.containerd.kata.v2":  "containerd-shim-kata-v2",
		"io.containerd.runsc.v1": "containerd-shim-runsc-v1",
	} {
		got, err := BinaryName(runtime)
		if err != nil || got != want {
			t.Errorf("BinaryName(%q) = %q, %v; want %q", runtime, got, err, want)
		}
	}
	for _, bad := range []string{"", "runc", "io..v2", "io.x/y.v2", "a.b."} {
		if _, err := BinaryName(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("BinaryName(%q): %v, want invalid argument", bad, err)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for out, want := range map[string]string{
		"unix:///run/berth/s/abc": "/run/berth/s/abc",
		"/run/berth/s/abc\n":      "/run/berth/s/abc",
		`{"version":2,"address":"unix:///run/s/x","protocol":"ttrpc"}`: "/run/s/x",
	} {
		got, err := parseAddress([]byte(out))
		if err != nil || got != want {
			t.Errorf("parseAddress(%q) = %q, %v; want %q", out, got, err, want)
		}
	}
	if _, err := parseAddress([]byte(`{"version":2,"address":"unix:///x","protocol":"grpc"}`)); !errdefs.IsNotImplemented(err) {
		t.Errorf("grpc shim: %v", err)
	}
	if _, err := parseAddress([]byte("relative/sock")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("relative address: %v", err)
	}
}

func writeExecutable(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestResolveBinary(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	writeExecutable(t, filepath.Join(second, "berth-shim-runc-v2"))
	writeExecutable(t, filepath.Join(first, "berth-shim-runc-v2"))
	writeExecutable(t, filepath.Join(second, "custom-shim"))
	if err := os.WriteFile(filepath.Join(first, "containerd-shim-foo-v1"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", second)
	m := &Manager{opts: Options{
		SearchDirs:     []string{first},
		DefaultRuntime: "io.berth.runc.v2",
		Runtimes:       map[string]string{"io.containerd.runc.v2": "custom-shim", "io.x.abs.v1": filepath.Join(second, "custom-shim")},
	}}
	for runtime, want := range map[string]string{
		"":                                   filepath.Join(first, "berth-shim-runc-v2"),
		"io.berth.runc.v2":                   filepath.Join(first, "berth-shim-runc-v2"),
		"io.containerd.runc.v2":              filepath.Join(second, "custom-shim"),
		"io.x.abs.v1":                        filepath.Join(second, "custom-shim"),
		filepath.Join(second, "custom-shim"): filepath.Join(second, "custom-shim"),
	} {
		got, err := m.resolveBinary(runtime)
		if err != nil || got != want {
			t.Errorf("resolveBinary(%q) = %q, %v; want %q", runtime, got, err, want)
		}
	}
	// Not executable in the first folder, absent from PATH.
	if _, err := m.resolveBinary("io.containerd.foo.v1"); !errdefs.IsNotFound(err) {
		t.Errorf("missing shim: %v", err)
	}
}

func TestRuncOptions(t *testing.T) {
	m := &Manager{opts: Options{RuntimeRoot: "/run/berth/runc"}}
	decode := func(a *anypb.Any) *options.Options {
		t.Helper()
		var o options.Options
		if err := proto.Unmarshal(a.GetValue(), &o); err != nil {
			t.Fatal(err)
		}
		return &o
	}
	got, err := m.runcOptions("io.berth.runc.v2", nil)
	if err != nil || got.TypeUrl != "containerd.runc.v1.Options" || decode(got).Root != "/run/berth/runc" {
		t.Fatalf("no options: %v %v", got, err)
	}
	given, _ := proto.Marshal(&options.Options{BinaryName: "crun"})
	got, err = m.runcOptions("io.containerd.runc.v2", &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: given})
	if o := decode(got); err != nil || o.Root != "/run/berth/runc" || o.BinaryName != "crun" {
		t.Fatalf("options kept with root added: %v %v", o, err)
	}
	own, _ := proto.Marshal(&options.Options{Root: "/elsewhere"})
	got, _ = m.runcOptions("io.containerd.runc.v2", &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: own})
	if decode(got).Root != "/elsewhere" {
		t.Errorf("a client's root was replaced")
	}
	other := &anypb.Any{TypeUrl: "io.kata.Options", Value: []byte{1}}
	if got, _ := m.runcOptions("io.containerd.kata.v2", other); got != other {
		t.Errorf("options of another runtime changed")
	}
	if got, _ := m.runcOptions("io.containerd.runc.v2", other); got != other {
		t.Errorf("unknown options type for runc changed")
	}
	if _, err := m.runcOptions("io.berth.runc.v2", &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0xff}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad options: %v", err)
	}
}

func TestBundleLayout(t *testing.T) {
	m := &Manager{opts: Options{State: t.TempDir()}}
	b, err := m.newBundle("ns", "c1", []byte(`{"ociVersion":"1.0.2"}`), "io.berth.runc.v2", "/bin/shim")
	if err != nil {
		t.Fatal(err)
	}
	if b.path != filepath.Join(m.opts.State, "ns", "c1") {
		t.Errorf("bundle at %s", b.path)
	}
	if b.readFile(RuntimeFile) != "io.berth.runc.v2" || b.readFile(BinaryFile) != "/bin/shim" || b.readFile(SpecFile) != `{"ociVersion":"1.0.2"}` {
		t.Errorf("bundle files: %q %q %q", b.readFile(RuntimeFile), b.readFile(BinaryFile), b.readFile(SpecFile))
	}
	if fi, err := os.Stat(filepath.Join(b.path, LogFifo)); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("log FIFO: %v %v", fi, err)
	}
	if _, err := m.newBundle("ns", "c1", []byte(`{}`), "r", "b"); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second bundle: %v", err)
	}
	if _, err := m.newBundle("ns", "c2", []byte(`not json`), "r", "b"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad spec: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.opts.State, "ns", "c2")); !os.IsNotExist(err) {
		t.Errorf("failed bundle left behind: %v", err)
	}
	if err := b.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.path); !os.IsNotExist(err) {
		t.Errorf("bundle not removed: %v", err)
	}
}

// syncBuffer is a log destination written by the copying goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestShimLogCopied(t *testing.T) {
	var out syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(old)

	b := &bundle{path: t.TempDir()}
	stop, err := copyShimLog(b, "ns", "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// A shim opens the FIFO write-only; berthd's read-write hold means
	// it never blocks and never sees a closed reader.
	w, err := os.OpenFile(filepath.Join(b.path, LogFifo), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", maxShimLogLine+10)
	w.WriteString("time=now level=INFO msg=serving\nlevel=error msg=broken\n" + long + "\n")
	w.Close()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Count(out.String(), "\n") >= 4 {
			break
		}
	}
	logs := out.String()
	if !strings.Contains(logs, `level=DEBUG msg=shim namespace=ns id=c1 log="time=now level=INFO msg=serving"`) ||
		!strings.Contains(logs, "level=ERROR msg=shim namespace=ns id=c1") || !strings.Contains(logs, "xxxx") {
		t.Errorf("shim log not copied:\n%s", logs)
	}
}

func TestCreateValidates(t *testing.T) {
	m := &Manager{opts: Options{State: t.TempDir(), DefaultRuntime: "io.berth.none.v9"}, tasks: map[string]*Task{}, exiting: map[string]*teardown{}}
	if _, err := m.Create(context.Background(), "c1", CreateOpts{}); !errdefs.IsFailedPrecondition(err) && !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("no namespace: %v", err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "ns")
	if _, err := m.Create(ctx, "bad id/x", CreateOpts{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad id: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := m.Create(ctx, "c1", CreateOpts{Spec: []byte(`{}`)}); !errdefs.IsNotFound(err) {
		t.Errorf("missing shim: %v", err)
	}
	if entries, _ := os.ReadDir(m.opts.State); len(entries) != 0 {
		t.Errorf("a failed create left %v", entries)
	}
	if _, err := m.Get(ctx, "c1"); !errdefs.IsNotFound(err) {
		t.Errorf("failed task is visible: %v", err)
	}
}
