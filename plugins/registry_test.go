package plugins

import (
	"strings"
	"testing"
)

func reg(t Type, id string, requires ...Type) *Registration {
	return &Registration{Type: t, ID: id, Requires: requires, InitFn: func(*InitContext) (any, error) { return nil, nil }}
}

func uris(rs []*Registration) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.URI())
	}
	return out
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func TestGraphOrdersByRequirements(t *testing.T) {
	regs := []*Registration{
		reg(GRPCPlugin, "introspection", All),
		reg(GRPCPlugin, "images", MetadataPlugin),
		reg(MetadataPlugin, "bolt", ContentPlugin, SnapshotPlugin),
		reg(SnapshotPlugin, "overlayfs"),
		reg(SnapshotPlugin, "native"),
		reg(ContentPlugin, "content"),
	}
	order, err := Graph(regs)
	if err != nil {
		t.Fatal(err)
	}
	got := uris(order)
	if len(got) != len(regs) {
		t.Fatalf("got %d plugins, want %d: %v", len(got), len(regs), got)
	}
	before := func(a, b string) {
		if indexOf(got, a) > indexOf(got, b) {
			t.Errorf("%s must come before %s in %v", a, b, got)
		}
	}
	before("io.containerd.content.v1.content", "io.containerd.metadata.v1.bolt")
	before("io.containerd.snapshotter.v1.native", "io.containerd.metadata.v1.bolt")
	before("io.containerd.snapshotter.v1.overlayfs", "io.containerd.metadata.v1.bolt")
	before("io.containerd.metadata.v1.bolt", "io.containerd.grpc.v1.images")
	if got[len(got)-1] != "io.containerd.grpc.v1.introspection" {
		t.Errorf("a plugin requiring all must come last: %v", got)
	}
	again, _ := Graph(regs)
	if strings.Join(uris(again), ",") != strings.Join(got, ",") {
		t.Error("order must be reproducible")
	}
}

func TestGraphDetectsCycles(t *testing.T) {
	_, err := Graph([]*Registration{
		reg(ContentPlugin, "a", MetadataPlugin),
		reg(MetadataPlugin, "b", SnapshotPlugin),
		reg(SnapshotPlugin, "c", ContentPlugin),
	})
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("want a cycle error, got %v", err)
	}
	for _, n := range []string{"content.v1.a", "metadata.v1.b", "snapshotter.v1.c"} {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("cycle error %q does not name %s", err, n)
		}
	}
}

func TestSkipErrorIsRecognised(t *testing.T) {
	err := Skip("overlay is not supported on %s", "tmpfs")
	if !strings.Contains(err.Error(), "skip plugin") || !strings.Contains(err.Error(), "tmpfs") {
		t.Fatalf("skip error %q must carry the reason and ctr's marker", err)
	}
}

func TestInitContextLookups(t *testing.T) {
	set := NewSet()
	set.Add(reg(SnapshotPlugin, "overlayfs"), Meta{}, "overlay", nil)
	set.Add(reg(SnapshotPlugin, "btrfs"), Meta{}, nil, Skip("not btrfs"))
	set.Add(reg(MetadataPlugin, "bolt"), Meta{}, "db", nil)
	ic := NewContext(t.Context(), reg(GRPCPlugin, "x"), set, "/r", "/s", nil, nil)
	if ic.Root != "/r/io.containerd.grpc.v1.x" || ic.State != "/s/io.containerd.grpc.v1.x" {
		t.Errorf("plugin folders: %s %s", ic.Root, ic.State)
	}
	if v, err := ic.GetSingle(MetadataPlugin); err != nil || v != "db" {
		t.Errorf("GetSingle(metadata) = %v, %v", v, err)
	}
	if _, err := ic.GetSingle(SnapshotPlugin); err == nil {
		t.Error("GetSingle must refuse a type with two plugins")
	}
	if _, err := ic.GetByID(SnapshotPlugin, "btrfs"); err == nil {
		t.Error("GetByID must return a skipped plugin's error")
	}
	if got := ic.GetByType(SnapshotPlugin); len(got) != 1 || got["overlayfs"] != "overlay" {
		t.Errorf("GetByType must list only working plugins: %v", got)
	}
}
