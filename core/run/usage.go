package run

import (
	"context"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/usage"
)

// DiskUsage reports the containers' writable layers for `berth system df`:
// active ones are those whose task runs; what stopped containers hold is
// reclaimable by removing them. It implements usage.DiskReporter.
func (m *Manager) DiskUsage(ctx context.Context, ns string, verbose bool) ([]usage.Summary, []usage.Item, error) {
	nss := []string{ns}
	if ns == "" {
		if m.o.Namespaces == nil {
			cur, ok := namespaces.Namespace(ctx)
			if !ok {
				return nil, nil, nil
			}
			nss = []string{cur}
		} else {
			var err error
			if nss, err = m.o.Namespaces(ctx); err != nil {
				return nil, nil, err
			}
		}
	}
	sum := usage.Summary{Type: "Containers"}
	var items []usage.Item
	for _, n := range nss {
		recs, err := m.List(namespaces.WithNamespace(ctx, n))
		if err != nil {
			return nil, nil, err
		}
		for _, r := range recs {
			size := m.layerSize(namespaces.WithNamespace(ctx, n), r)
			sum.Total++
			sum.Size += size
			if r.State.Running() {
				sum.Active++
			} else {
				sum.Reclaimable += size
			}
			if verbose {
				items = append(items, usage.Item{Type: "Containers", Namespace: n, Name: r.Config.Name, Size: size})
			}
		}
	}
	return []usage.Summary{sum}, items, nil
}
