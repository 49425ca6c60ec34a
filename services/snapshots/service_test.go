package snapshots

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	api "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/internal/testutil/require"
	"github.com/berthd/berth/snapshotters/native"
)

func newNative(t *testing.T) *native.Snapshotter {
	t.Helper()
	require.Root(t)
	sn, err := native.New(t.TempDir(), native.WithSyncRemove())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	return sn
}

func only(name string, sn snapshots.Snapshotter) Lookup {
	return func(n string) (snapshots.Snapshotter, error) {
		if n != name {
			return nil, nil
		}
		return sn, nil
	}
}

func TestSnapshotterNames(t *testing.T) {
	svc := New(only("native", newNative(t)), nil)
	ctx := context.Background()

	_, err := svc.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: "nope", Key: "k"})
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `snapshotter "nope"`) {
		t.Errorf("stat on an unknown snapshotter: %v", err)
	}
	_, err = svc.Stat(ctx, &api.StatSnapshotRequest{Key: "k"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("stat without a snapshotter name: %v", err)
	}
	_, err = svc.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: "native", Key: "k"})
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `"k"`) {
		t.Errorf("stat of an unknown key: %v", err)
	}

	// A lookup error keeps its class and gains the name.
	failing := New(func(string) (snapshots.Snapshotter, error) {
		return nil, fmt.Errorf("plugin did not start: %w", errdefs.ErrUnavailable)
	}, nil)
	_, err = failing.Usage(ctx, &api.UsageRequest{Snapshotter: "broken", Key: "k"})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), `snapshotter "broken": plugin did not start`) {
		t.Errorf("usage on a snapshotter the lookup fails: %v", err)
	}
}

func TestCalls(t *testing.T) {
	svc := New(only("native", newNative(t)), nil)
	ctx := context.Background()
	const name = "native"

	prep, err := svc.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: name, Key: "a", Labels: map[string]string{"x": "1", "y": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(prep.Mounts) != 1 || prep.Mounts[0].Type != "bind" {
		t.Fatalf("prepare returned mounts %v", prep.Mounts)
	}
	mounts, err := svc.Mounts(ctx, &api.MountsRequest{Snapshotter: name, Key: "a"})
	if err != nil || fmt.Sprint(mounts.Mounts) != fmt.Sprint(prep.Mounts) {
		t.Errorf("mounts %v, %v; want %v", mounts.GetMounts(), err, prep.Mounts)
	}
	if _, err := svc.Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: name, Name: "base", Key: "a", Labels: map[string]string{"c": "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.View(ctx, &api.ViewSnapshotRequest{Snapshotter: name, Key: "v", Parent: "base"}); err != nil {
		t.Fatal(err)
	}

	st, err := svc.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: name, Key: "v"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Info.Kind != api.Kind_VIEW || st.Info.Name != "v" || st.Info.Parent != "base" || st.Info.CreatedAt == nil || st.Info.UpdatedAt == nil {
		t.Errorf("stat of the view: %v", st.Info)
	}
	st, err = svc.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: name, Key: "base"})
	if err != nil || st.Info.Kind != api.Kind_COMMITTED || fmt.Sprint(st.Info.Labels) != "map[c:1]" {
		t.Errorf("stat of the committed snapshot: %v, %v", st.GetInfo(), err)
	}

	up, err := svc.Update(ctx, &api.UpdateSnapshotRequest{
		Snapshotter: name,
		Info:        &api.Info{Name: "base", Labels: map[string]string{"c": "ignored", "d": "4"}},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"labels.d"}},
	})
	if err != nil || fmt.Sprint(up.Info.Labels) != "map[c:1 d:4]" || up.Info.Kind != api.Kind_COMMITTED {
		t.Errorf("update of labels.d: %v, %v", up.GetInfo(), err)
	}
	if _, err := svc.Update(ctx, &api.UpdateSnapshotRequest{Snapshotter: name}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("update without info: %v", err)
	}

	u, err := svc.Usage(ctx, &api.UsageRequest{Snapshotter: name, Key: "base"})
	if err != nil || u.Inodes < 1 {
		t.Errorf("usage of base: %v, %v", u, err)
	}
	if _, err := svc.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: name, Key: "base"}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("remove of a parent with a view: %v", err)
	}
	for _, key := range []string{"v", "base"} {
		if _, err := svc.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: name, Key: key}); err != nil {
			t.Errorf("remove %s: %v", key, err)
		}
	}
}

// hidden offers only the Snapshotter methods of a real snapshotter, as a
// snapshotter without background removal would.
type hidden struct{ snapshots.Snapshotter }

func TestCleanup(t *testing.T) {
	sn := newNative(t)
	ctx := context.Background()
	if _, err := New(only("native", sn), nil).Cleanup(ctx, &api.CleanupRequest{Snapshotter: "native"}); err != nil {
		t.Errorf("cleanup of native: %v", err)
	}
	_, err := New(only("plain", hidden{sn}), nil).Cleanup(ctx, &api.CleanupRequest{Snapshotter: "plain"})
	if !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), `"plain"`) {
		t.Errorf("cleanup of a snapshotter without it: %v", err)
	}
}

// TestEvents checks what is published for each change, and that refused
// calls publish nothing.
func TestEvents(t *testing.T) {
	ex := events.NewExchange()
	svc := New(only("native", newNative(t)), ex)
	sub, cancel := context.WithCancel(context.Background())
	defer cancel()
	envs, errs := ex.Subscribe(sub)
	ctx := namespaces.WithNamespace(context.Background(), "ns")

	calls := []func() error{
		func() error {
			_, err := svc.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: "native", Key: "a"})
			return err
		},
		func() error {
			_, err := svc.Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: "native", Name: "base", Key: "a"})
			return err
		},
		func() error {
			_, err := svc.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: "native", Key: "b", Parent: "base"})
			return err
		},
		func() error {
			_, err := svc.View(ctx, &api.ViewSnapshotRequest{Snapshotter: "native", Key: "v", Parent: "base"})
			return err
		},
		func() error {
			_, err := svc.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: "native", Key: "b"})
			return err
		},
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// Refused: none of these may publish.
	refused := []error{}
	_, err := svc.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: "native", Key: "base"})
	refused = append(refused, err)
	_, err = svc.Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: "native", Name: "x", Key: "missing"})
	refused = append(refused, err)
	_, err = svc.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: "native", Key: "base"})
	refused = append(refused, err)
	for i, err := range refused {
		if err == nil {
			t.Fatalf("refused call %d succeeded", i)
		}
	}
	// A marker after them proves they published nothing.
	if _, err := svc.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: "native", Key: "v"}); err != nil {
		t.Fatal(err)
	}

	want := []struct {
		topic string
		event any
	}{
		{TopicPrepare, &apievents.SnapshotPrepare{Key: "a", Snapshotter: "native"}},
		{TopicCommit, &apievents.SnapshotCommit{Key: "a", Name: "base", Snapshotter: "native"}},
		{TopicPrepare, &apievents.SnapshotPrepare{Key: "b", Parent: "base", Snapshotter: "native"}},
		{TopicRemove, &apievents.SnapshotRemove{Key: "b", Snapshotter: "native"}},
		{TopicRemove, &apievents.SnapshotRemove{Key: "v", Snapshotter: "native"}},
	}
	for i, w := range want {
		var env *events.Envelope
		select {
		case env = <-envs:
		case err := <-errs:
			t.Fatalf("subscription ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d (%s) not published within 10s", i, w.topic)
		}
		got, err := typeurl.UnmarshalAny(env.Event)
		if err != nil {
			t.Fatal(err)
		}
		if env.Topic != w.topic || env.Namespace != "ns" || fmt.Sprint(got) != fmt.Sprint(w.event) {
			t.Errorf("event %d: %s in %q: %v; want %s in ns: %v", i, env.Topic, env.Namespace, got, w.topic, w.event)
		}
	}
}
