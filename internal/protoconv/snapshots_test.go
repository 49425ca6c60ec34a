package protoconv

import (
	"reflect"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"

	"github.com/berthd/berth/core/snapshots"
)

func TestSnapshotInfoRoundTrip(t *testing.T) {
	created := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for _, info := range []snapshots.Info{
		{Kind: snapshots.KindActive, Name: "a", Parent: "p", Labels: map[string]string{"x": "1"}, Created: created, Updated: created.Add(time.Second)},
		{Kind: snapshots.KindView, Name: "v"},
		{Kind: snapshots.KindCommitted, Name: "c", Created: created, Updated: created},
		{Kind: snapshots.KindUnknown},
	} {
		p := SnapshotInfoToProto(info)
		if int32(p.Kind) != int32(info.Kind) {
			t.Errorf("%s: kind %v on the wire", info.Name, p.Kind)
		}
		if info.Created.IsZero() != (p.CreatedAt == nil) {
			t.Errorf("%s: zero times must be left out, got %v", info.Name, p.CreatedAt)
		}
		if back := SnapshotInfoFromProto(p); !reflect.DeepEqual(back, info) {
			t.Errorf("round trip of %+v gave %+v", info, back)
		}
	}
	if got := SnapshotInfoFromProto(nil); !reflect.DeepEqual(got, snapshots.Info{}) {
		t.Errorf("nil info gave %+v", got)
	}
	if got := SnapshotKindFromProto(snapshotsapi.Kind(42)); got != snapshots.KindUnknown {
		t.Errorf("unknown wire kind gave %v", got)
	}
}
