package metadata

import (
	"reflect"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/berthd/berth/core/containers"
)

func anyOf(url, value string) typeurl.Any {
	return &storedAny{typeURL: url, value: []byte(value)}
}

func sameAny(a, b typeurl.Any) bool {
	if isNilAny(a) || isNilAny(b) {
		return isNilAny(a) == isNilAny(b)
	}
	return a.GetTypeUrl() == b.GetTypeUrl() && string(a.GetValue()) == string(b.GetValue())
}

func newContainer(id string) containers.Container {
	return containers.Container{
		ID:          id,
		Image:       "docker.io/library/busybox:latest",
		Runtime:     containers.RuntimeInfo{Name: "io.containerd.runc.v2", Options: anyOf("runc.options", "opts")},
		Spec:        anyOf("types.containerd.io/opencontainers/runtime-spec/1/Spec", `{"ociVersion":"1.0.2"}`),
		Snapshotter: "native",
		SnapshotKey: id + "-rw",
		Labels:      map[string]string{"app": "web"},
		Extensions:  map[string]typeurl.Any{"berth.run": anyOf("berth/run", "x")},
		SandboxID:   "pod-1",
	}
}

func TestContainerRecords(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	cs := e.db.Containers()
	c := newContainer("web-1")
	created, err := cs.Create(ctx, c)
	if err != nil || created.CreatedAt.IsZero() {
		t.Fatalf("create: %+v, %v", created, err)
	}
	_, err = cs.Create(ctx, c)
	wantErr(t, "create of a taken id", err, errdefs.ErrAlreadyExists)
	got, err := cs.Get(ctx, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Image != c.Image || got.Runtime.Name != c.Runtime.Name || !sameAny(got.Runtime.Options, c.Runtime.Options) ||
		!sameAny(got.Spec, c.Spec) || got.Snapshotter != "native" || got.SnapshotKey != "web-1-rw" ||
		!reflect.DeepEqual(got.Labels, c.Labels) || !sameAny(got.Extensions["berth.run"], c.Extensions["berth.run"]) ||
		got.SandboxID != "pod-1" || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("get returned %+v", got)
	}
	if _, err := cs.Get(nsCtx("b"), "web-1"); !errdefs.IsNotFound(err) {
		t.Errorf("get from another namespace: %v", err)
	}

	upd := containers.Container{ID: "web-1", Labels: map[string]string{"v": "2"}, Image: "other", Spec: anyOf("s", "new"),
		Extensions: map[string]typeurl.Any{"more": anyOf("m", "1")}}
	got, err = cs.Update(ctx, upd, "labels.v", "image", "extensions.more", "spec")
	if err != nil || got.Image != "other" || !reflect.DeepEqual(got.Labels, map[string]string{"app": "web", "v": "2"}) ||
		len(got.Extensions) != 2 || !sameAny(got.Spec, upd.Spec) || got.Runtime.Name != c.Runtime.Name {
		t.Errorf("field-path update: %+v, %v", got, err)
	}
	for _, path := range []string{"runtime", "runtime.name", "snapshotter", "id"} {
		_, err := cs.Update(ctx, upd, path)
		wantErr(t, "update of "+path, err, errdefs.ErrInvalidArgument)
	}
	_, err = cs.Update(ctx, containers.Container{ID: "web-1", Runtime: containers.RuntimeInfo{Name: "other"}, Snapshotter: "native", Spec: c.Spec})
	wantErr(t, "update without paths changing the runtime", err, errdefs.ErrInvalidArgument)
	whole := newContainer("web-1")
	whole.Labels = nil
	whole.Extensions = nil
	got, err = cs.Update(ctx, whole)
	if err != nil || len(got.Labels) != 0 || len(got.Extensions) != 0 {
		t.Errorf("update without paths: %+v, %v", got, err)
	}
	_, err = cs.Update(ctx, containers.Container{ID: "web-1"}, "spec")
	wantErr(t, "update removing the spec", err, errdefs.ErrInvalidArgument)
	_, err = cs.Update(ctx, containers.Container{ID: "nope"}, "labels")
	wantErr(t, "update of a missing container", err, errdefs.ErrNotFound)

	if err := cs.Delete(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "second delete", cs.Delete(ctx, "web-1"), errdefs.ErrNotFound)
}

func TestContainerValidation(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	for what, change := range map[string]func(*containers.Container){
		"bad id":              func(c *containers.Container) { c.ID = "bad id" },
		"no runtime":          func(c *containers.Container) { c.Runtime.Name = "" },
		"no spec":             func(c *containers.Container) { c.Spec = nil },
		"key, no snapshotter": func(c *containers.Container) { c.Snapshotter = "" },
		"bad label":           func(c *containers.Container) { c.Labels = map[string]string{"": "x"} },
		"empty extension":     func(c *containers.Container) { c.Extensions = map[string]typeurl.Any{"": anyOf("a", "b")} },
	} {
		c := newContainer("ok")
		change(&c)
		_, err := e.db.Containers().Create(ctx, c)
		wantErr(t, what, err, errdefs.ErrInvalidArgument)
	}
}

func TestContainerFilters(t *testing.T) {
	e := newEnv(t, manualGC)
	ctx := nsCtx("a")
	for i, id := range []string{"a", "b", "c"} {
		c := newContainer(id)
		if i == 1 {
			c.Image = "alpine"
			c.Labels = map[string]string{"app": "db"}
			c.SandboxID = ""
		}
		if _, err := e.db.Containers().Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		filter string
		want   []string
	}{
		{"id==b", []string{"b"}},
		{"image==alpine", []string{"b"}},
		{"labels.app==web", []string{"a", "c"}},
		{"runtime.name==io.containerd.runc.v2,sandbox==pod-1", []string{"a", "c"}},
		{"snapshotter==native,snapshotkey==c-rw", []string{"c"}},
	} {
		got, err := e.db.Containers().List(ctx, c.filter)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, g := range got {
			ids = append(ids, g.ID)
		}
		slices.Sort(ids)
		if !reflect.DeepEqual(ids, c.want) {
			t.Errorf("filter %q: %v, want %v", c.filter, ids, c.want)
		}
	}
}
