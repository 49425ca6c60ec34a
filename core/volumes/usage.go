package volumes

import (
	"context"

	"github.com/berthd/berth/core/usage"
)

// UsageType is the kind `berth system df` reports volumes under.
const UsageType = "Local Volumes"

// DiskUsage implements usage.DiskReporter: the volumes of namespace ns
// ("" for every namespace), those with users counting as active and the
// others as reclaimable. Volumes whose data is not their own (binds of host
// directories) count with size 0.
func (s *Store) DiskUsage(ctx context.Context, ns string, verbose bool) ([]usage.Summary, []usage.Item, error) {
	nss := []string{ns}
	if ns == "" {
		var err error
		if nss, err = s.db.Namespaces().List(ctx); err != nil {
			return nil, nil, err
		}
	}
	sum := usage.Summary{Type: UsageType}
	var items []usage.Item
	for _, n := range nss {
		vols, err := s.list(n)
		if err != nil {
			return nil, nil, err
		}
		for _, v := range vols {
			size := max(s.size(ctx, v), 0)
			sum.Total++
			sum.Size += size
			if len(v.Users) > 0 {
				sum.Active++
			} else {
				sum.Reclaimable += size
			}
			if verbose {
				items = append(items, usage.Item{Type: UsageType, Namespace: n, Name: v.Name, Size: size, Users: int64(len(v.Users))})
			}
		}
	}
	return []usage.Summary{sum}, items, nil
}
