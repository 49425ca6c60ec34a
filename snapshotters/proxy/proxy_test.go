package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	api "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"

	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/internal/testutil/require"
	"github.com/berthd/berth/snapshotters/testsuite"
)

func TestSuiteInProcess(t *testing.T) {
	testsuite.Run(t, "proxy", inProcess)
}

func TestSuiteBinary(t *testing.T) {
	testsuite.RequireRoot(t)
	testsuite.Run(t, "proxy-binary", overBinary(buildSnapshotter(t)))
}

// wantErr fails unless err is of class and its message names what (once,
// without the class repeated by the round trip).
func wantErr(t *testing.T, call string, err, class error, what string) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Errorf("%s: got %v, want %v", call, err, class)
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, what) {
		t.Errorf("%s: error %q does not name %s", call, msg, what)
	}
	if strings.Contains(msg, class.Error()+": "+class.Error()) {
		t.Errorf("%s: error %q repeats its class", call, msg)
	}
}

func TestErrorRoundTrips(t *testing.T) {
	require.Root(t)
	r := newRemote(t, nil)
	ctx := context.Background()
	sn := r.proxy

	_, err := sn.Stat(ctx, "missing")
	wantErr(t, "stat of an unknown key", err, errdefs.ErrNotFound, `"missing"`)

	if _, err := sn.Prepare(ctx, "base-active", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "base", "base-active"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "child", "base"); err != nil {
		t.Fatal(err)
	}
	_, err = sn.Prepare(ctx, "child", "base")
	wantErr(t, "prepare of a taken key", err, errdefs.ErrAlreadyExists, `"child"`)
	err = sn.Remove(ctx, "base")
	wantErr(t, "remove of a parent with children", err, errdefs.ErrFailedPrecondition, `"base"`)
	_, err = sn.View(ctx, "view", "child")
	wantErr(t, "view of an active snapshot", err, errdefs.ErrInvalidArgument, `"child"`)
	_, err = sn.Update(ctx, snapshots.Info{Name: "child"}, "kind")
	wantErr(t, "update of the kind", err, errdefs.ErrInvalidArgument, `"kind"`)
	err = sn.Commit(ctx, "x", "base")
	wantErr(t, "commit of a committed snapshot", err, errdefs.ErrFailedPrecondition, `"base"`)

	// The snapshots are untouched by the refusals.
	if info, err := sn.Stat(ctx, "child"); err != nil || info.Kind != snapshots.KindActive || info.Parent != "base" {
		t.Errorf("stat child after refusals: %+v, %v", info, err)
	}
	if err := sn.Cleanup(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}

	other := New(r.conn, "nope")
	_, err = other.Stat(ctx, "child")
	wantErr(t, "stat on an unknown snapshotter", err, errdefs.ErrNotFound, `snapshotter "nope"`)
}

func TestListChunks(t *testing.T) {
	require.Root(t)
	r := newRemote(t, nil)
	ctx := context.Background()
	const n = 250 // two and a half chunks
	var want []string
	for i := range n {
		key := fmt.Sprintf("s-%03d", i)
		labels := map[string]string{"i": fmt.Sprint(i), "odd": fmt.Sprint(i%2 == 1)}
		if _, err := r.proxy.Prepare(ctx, key, "", snapshots.WithLabels(labels)); err != nil {
			t.Fatal(err)
		}
		want = append(want, key)
	}

	// The stream really is chunked: several messages, none above the limit.
	stream, err := api.NewSnapshotsClient(r.conn).List(ctx, &api.ListSnapshotsRequest{Snapshotter: "native"})
	if err != nil {
		t.Fatal(err)
	}
	messages, total := 0, 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		messages++
		total += len(resp.Info)
		if len(resp.Info) == 0 || len(resp.Info) > 100 {
			t.Errorf("message %d holds %d infos", messages, len(resp.Info))
		}
	}
	if total != n || messages != 3 {
		t.Errorf("list sent %d infos in %d messages, want %d in 3", total, messages, n)
	}

	walk := func(filters ...string) []string {
		var got []string
		err := r.proxy.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			var i int
			if _, err := fmt.Sscan(info.Labels["i"], &i); err != nil || fmt.Sprintf("s-%03d", i) != info.Name {
				t.Errorf("walk reported %s with labels %v", info.Name, info.Labels)
			}
			got = append(got, info.Name)
			return nil
		}, filters...)
		if err != nil {
			t.Fatalf("walk %q: %v", filters, err)
		}
		sort.Strings(got)
		return got
	}
	if got := walk(); !reflect.DeepEqual(got, want) {
		t.Errorf("walk reported %d snapshots, want %d: %q", len(got), n, got)
	}
	var odd []string
	for i := 1; i < n; i += 2 {
		odd = append(odd, want[i])
	}
	if got := walk("labels.odd==true"); !reflect.DeepEqual(got, odd) {
		t.Errorf("filtered walk reported %q, want %q", got, odd)
	}

	// A callback error in the second chunk ends the walk at once.
	stop := errors.New("stop")
	calls := 0
	err = r.proxy.Walk(ctx, func(context.Context, snapshots.Info) error {
		calls++
		if calls == 150 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 150 {
		t.Errorf("walk stopped with %v after %d calls, want the callback's error after 150", err, calls)
	}
	if _, err := r.proxy.Stat(ctx, "s-000"); err != nil {
		t.Errorf("stat after an abandoned walk: %v", err)
	}
}

// TestHeadersAndEvents checks the proxy forwards the namespace and lease
// of its context, and the service publishes prepare, commit and remove
// events in that namespace.
func TestHeadersAndEvents(t *testing.T) {
	require.Root(t)
	var mu sync.Mutex
	seenLeases := map[string]bool{}
	r := newRemote(t, events.NewExchange(), func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if id, ok := leases.FromContext(ctx); ok {
			mu.Lock()
			seenLeases[id] = true
			mu.Unlock()
		}
		return h(ctx, req)
	})
	sub, cancel := context.WithCancel(context.Background())
	defer cancel()
	envs, errs := r.ex.Subscribe(sub, `topic~="^/snapshot/"`)

	ctx := leases.WithLease(namespaces.WithNamespace(context.Background(), "ns1"), "lease1")
	if _, err := r.proxy.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.proxy.View(ctx, "not-published", ""); err != nil {
		t.Fatal(err)
	}
	if err := r.proxy.Commit(ctx, "b", "a"); err != nil {
		t.Fatal(err)
	}
	if err := r.proxy.Remove(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		topic string
		event any
	}{
		{"/snapshot/prepare", &apievents.SnapshotPrepare{Key: "a", Snapshotter: "native"}},
		{"/snapshot/commit", &apievents.SnapshotCommit{Key: "a", Name: "b", Snapshotter: "native"}},
		{"/snapshot/remove", &apievents.SnapshotRemove{Key: "b", Snapshotter: "native"}},
	}
	for _, w := range want {
		env := nextEvent(t, envs, errs)
		if env.Topic != w.topic || env.Namespace != "ns1" {
			t.Fatalf("event %s in %q, want %s in ns1", env.Topic, env.Namespace, w.topic)
		}
		got, err := typeurl.UnmarshalAny(env.Event)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(w.event) {
			t.Errorf("%s event %v, want %v", w.topic, got, w.event)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !seenLeases["lease1"] || len(seenLeases) != 1 {
		t.Errorf("server saw leases %v, want lease1", seenLeases)
	}
}

func nextEvent(t *testing.T, envs <-chan *events.Envelope, errs <-chan error) *events.Envelope {
	t.Helper()
	select {
	case env := <-envs:
		return env
	case err := <-errs:
		t.Fatalf("subscription ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return nil
}

// TestCommitParent checks a parent given to Commit reaches the remote
// snapshotter, which rebases a snapshot prepared without one.
func TestCommitParent(t *testing.T) {
	require.Root(t)
	r := newRemote(t, nil)
	ctx := context.Background()
	for _, key := range []string{"a", "b"} {
		if _, err := r.proxy.Prepare(ctx, key, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.proxy.Commit(ctx, "base", "a"); err != nil {
		t.Fatal(err)
	}
	withParent := func(info *snapshots.Info) error { info.Parent = "base"; return nil }
	if err := r.proxy.Commit(ctx, "child", "b", withParent, snapshots.WithLabels(map[string]string{"l": "v"})); err != nil {
		t.Fatal(err)
	}
	info, err := r.proxy.Stat(ctx, "child")
	if err != nil || info.Parent != "base" || info.Labels["l"] != "v" || info.Kind != snapshots.KindCommitted {
		t.Errorf("stat of the rebased snapshot: %+v, %v", info, err)
	}
	wantErr(t, "remove of the new parent", r.proxy.Remove(ctx, "base"), errdefs.ErrFailedPrecondition, `"base"`)
}

func BenchmarkProxy(b *testing.B) {
	testsuite.Bench(b, "proxy", inProcess)
}

// BenchmarkProxyStat is the round trip every forwarded call pays.
func BenchmarkProxyStat(b *testing.B) {
	testsuite.RequireRoot(b)
	r, err := startRemote(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer r.close()
	ctx := namespaces.WithNamespace(context.Background(), "default")
	if _, err := r.proxy.Prepare(ctx, "k", "", snapshots.WithLabels(map[string]string{"a": "b"})); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.proxy.Stat(ctx, "k"); err != nil {
			b.Fatal(err)
		}
	}
}
