package content

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berthd/berth/core/filters"
)

func TestAdaptInfo(t *testing.T) {
	info := Info{
		Digest: digest.FromString("x"),
		Size:   42,
		Labels: map[string]string{"containerd.io/gc.ref.content.0": "sha256:abc", "a.b": "c"},
	}
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{"digest==" + info.Digest.String(), true},
		{"digest==sha256:00", false},
		{"size==42", true},
		{"size!=42", false},
		{`labels."containerd.io/gc.ref.content.0"`, true},
		{"labels.a.b==c", true},
		{`labels."a.b"==c`, true},
		{"labels.a", false},
		{"labels", false},
		{"createdat", false},
	} {
		f, err := filters.Parse(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Match(AdaptInfo(info)); got != tc.want {
			t.Errorf("%s: match %v, want %v", tc.filter, got, tc.want)
		}
	}
	if f, _ := filters.Parse("labels.a"); f.Match(AdaptInfo(Info{})) {
		t.Error("label present on an Info without labels")
	}
}

func TestAdaptStatus(t *testing.T) {
	with := Status{Ref: "layer-1", Expected: digest.FromString("y")}
	without := Status{Ref: "manifest"}
	for _, tc := range []struct {
		filter        string
		with, without bool
	}{
		{"ref==layer-1", true, false},
		{"ref~=^(layer|manifest)", true, true},
		{"expected", true, false},
		{"expected==" + with.Expected.String(), true, false},
		{"offset", false, false},
	} {
		f, err := filters.Parse(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Match(AdaptStatus(with)); got != tc.with {
			t.Errorf("%s on %+v: %v", tc.filter, with, got)
		}
		if got := f.Match(AdaptStatus(without)); got != tc.without {
			t.Errorf("%s on %+v: %v", tc.filter, without, got)
		}
	}
}
