package diff

import (
	"slices"
	"testing"

	"github.com/berthd/berth/core/archive"
	"github.com/berthd/berth/core/mount"
)

func TestParseOverlay(t *testing.T) {
	m := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"index=off", `upperdir=/s/u\,x`, "workdir=/s/w", `lowerdir=/s/2:/s/1\:a`,
	}}}
	spec, ok := parseOverlay(m)
	if !ok || spec.upper != "/s/u,x" || !slices.Equal(spec.lower, []string{"/s/2", "/s/1:a"}) {
		t.Fatalf("parseOverlay = %+v, %v", spec, ok)
	}
	for _, bad := range [][]mount.Mount{
		{{Type: "overlay", Options: []string{"lowerdir=/a::/b"}}},
		{{Type: "overlay", Options: []string{"upperdir=/u"}}},
		{{Type: "overlay", Target: "/sub", Options: []string{"lowerdir=/a"}}},
		{{Type: "bind", Source: "/a"}},
		{m[0], m[0]},
	} {
		if spec, ok := parseOverlay(bad); ok {
			t.Errorf("parseOverlay(%+v) accepted: %+v", bad, spec)
		}
	}
}

func TestApplyTarget(t *testing.T) {
	cases := []struct {
		mounts []mount.Mount
		dir    string
		mode   archive.WhiteoutMode
		ok     bool
	}{
		{[]mount.Mount{{Type: "overlay", Options: []string{"upperdir=/u", "workdir=/w", "lowerdir=/l"}}}, "/u", archive.WhiteoutOverlay, true},
		{[]mount.Mount{{Type: "overlay", Options: []string{"ro", "lowerdir=/l2:/l"}}}, "", archive.WhiteoutRemove, false},
		{[]mount.Mount{{Type: "bind", Source: "/b", Options: []string{"rbind", "rw"}}}, "/b", archive.WhiteoutRemove, true},
		{[]mount.Mount{{Type: "bind", Source: "/b", Options: []string{"rbind", "ro"}}}, "", archive.WhiteoutRemove, false},
		{[]mount.Mount{{Type: "tmpfs", Source: "tmpfs"}}, "", archive.WhiteoutRemove, false},
	}
	for _, c := range cases {
		dir, mode, ok := applyTarget(c.mounts)
		if dir != c.dir || mode != c.mode || ok != c.ok {
			t.Errorf("applyTarget(%+v) = %q, %v, %v; want %q, %v, %v", c.mounts, dir, mode, ok, c.dir, c.mode, c.ok)
		}
	}
}

func TestOverlayUpper(t *testing.T) {
	upper := []mount.Mount{{Type: "overlay", Options: []string{"workdir=/w", "upperdir=/u", "lowerdir=/l2:/l1"}}}
	sameView := []mount.Mount{{Type: "overlay", Options: []string{"ro", "lowerdir=/l2:/l1"}}}
	otherView := []mount.Mount{{Type: "overlay", Options: []string{"ro", "lowerdir=/l3:/l2:/l1"}}}
	if dir, ok := overlayUpper(sameView, upper); !ok || dir != "/u" {
		t.Errorf("same lower layers: %q, %v", dir, ok)
	}
	if _, ok := overlayUpper(otherView, upper); ok {
		t.Error("different lower layers accepted")
	}
	if _, ok := overlayUpper(nil, upper); ok {
		t.Error("empty lower accepted for an overlay with lower layers")
	}
	one := []mount.Mount{{Type: "overlay", Options: []string{"workdir=/w", "upperdir=/u", "lowerdir=/l1"}}}
	if _, ok := overlayUpper([]mount.Mount{{Type: "bind", Source: "/l1", Options: []string{"ro", "rbind"}}}, one); !ok {
		t.Error("bind view of the single lower layer refused")
	}
	if _, ok := overlayUpper([]mount.Mount{{Type: "bind", Source: "/l9", Options: []string{"ro", "rbind"}}}, one); ok {
		t.Error("bind view of another directory accepted")
	}
}

func TestReadOnly(t *testing.T) {
	in := []mount.Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l2:/l1"}},
		{Type: "bind", Source: "/b", Options: []string{"rbind", "rw"}},
	}
	out := readOnly(in)
	if want := []string{"index=off", "lowerdir=/u:/l2:/l1", "ro"}; !slices.Equal(out[0].Options, want) {
		t.Errorf("overlay options %q, want %q", out[0].Options, want)
	}
	if want := []string{"rbind", "ro"}; !slices.Equal(out[1].Options, want) {
		t.Errorf("bind options %q, want %q", out[1].Options, want)
	}
	if in[0].Options[1] != "workdir=/w" || in[1].Options[1] != "rw" {
		t.Error("readOnly changed its input")
	}
}
