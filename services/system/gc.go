package system

import (
	"context"
	"fmt"
	"sort"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/gc"
	api "github.com/berthd/berth/proto/berth/system/v1"
)

// Collector is implemented by the plugin that owns garbage collection
// (the metadata store).
type Collector interface {
	GarbageCollect(ctx context.Context) (gc.Stats, error)
}

// GarbageCollect runs a collection now and reports what it removed.
func (s *Service) GarbageCollect(ctx context.Context, _ *api.GarbageCollectRequest) (*api.GarbageCollectResponse, error) {
	for _, inst := range s.instances() {
		c, ok := inst.(Collector)
		if !ok {
			continue
		}
		st, err := c.GarbageCollect(ctx)
		if err != nil {
			return nil, err
		}
		return statsToProto(st), nil
	}
	return nil, fmt.Errorf("no plugin collects garbage: %w", errdefs.ErrNotImplemented)
}

func statsToProto(st gc.Stats) *api.GarbageCollectResponse {
	resp := &api.GarbageCollectResponse{
		Reclaimed: st.Reclaimed,
		PauseNs:   int64(st.Pause),
		ElapsedNs: int64(st.Elapsed),
	}
	for _, n := range append(append([]gc.Node(nil), st.Records...), st.Dropped...) {
		resp.Records = append(resp.Records, n.String())
	}
	for _, d := range st.Blobs {
		resp.Blobs = append(resp.Blobs, d.String())
	}
	resp.Ingests = append(resp.Ingests, st.Ingests...)
	for sn, keys := range st.Snapshots {
		for _, k := range keys {
			resp.Snapshots = append(resp.Snapshots, sn+"/"+k)
		}
	}
	sort.Strings(resp.Records)
	sort.Strings(resp.Snapshots)
	return resp
}
