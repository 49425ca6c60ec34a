package protoconv

import (
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"

	"github.com/berthd/berth/core/snapshots"
)

// SnapshotKindToProto converts a snapshot kind.
func SnapshotKindToProto(k snapshots.Kind) snapshotsapi.Kind {
	switch k {
	case snapshots.KindView:
		return snapshotsapi.Kind_VIEW
	case snapshots.KindActive:
		return snapshotsapi.Kind_ACTIVE
	case snapshots.KindCommitted:
		return snapshotsapi.Kind_COMMITTED
	}
	return snapshotsapi.Kind_UNKNOWN
}

// SnapshotKindFromProto converts an API snapshot kind.
func SnapshotKindFromProto(k snapshotsapi.Kind) snapshots.Kind {
	switch k {
	case snapshotsapi.Kind_VIEW:
		return snapshots.KindView
	case snapshotsapi.Kind_ACTIVE:
		return snapshots.KindActive
	case snapshotsapi.Kind_COMMITTED:
		return snapshots.KindCommitted
	}
	return snapshots.KindUnknown
}

// SnapshotInfoToProto converts a snapshot's description.
func SnapshotInfoToProto(i snapshots.Info) *snapshotsapi.Info {
	return &snapshotsapi.Info{
		Name:      i.Name,
		Parent:    i.Parent,
		Kind:      SnapshotKindToProto(i.Kind),
		CreatedAt: Timestamp(i.Created),
		UpdatedAt: Timestamp(i.Updated),
		Labels:    i.Labels,
	}
}

// SnapshotInfoFromProto converts an API snapshot description; nil gives
// the zero Info.
func SnapshotInfoFromProto(i *snapshotsapi.Info) snapshots.Info {
	if i == nil {
		return snapshots.Info{}
	}
	return snapshots.Info{
		Kind:    SnapshotKindFromProto(i.Kind),
		Name:    i.Name,
		Parent:  i.Parent,
		Labels:  i.Labels,
		Created: Time(i.CreatedAt),
		Updated: Time(i.UpdatedAt),
	}
}
