package v2

import (
	"context"
	"sync"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/berthd/berth/core/namespaces"
	"github.com/berthd/berth/core/usage"
)

var _ usage.TaskCounter = (*Manager)(nil)

// stateTimeout bounds one shim's answer when counting tasks.
const stateTimeout = 2 * time.Second

// TaskCounts counts the tasks of every namespace by state, asking the
// shims in parallel. Created tasks count as stopped, as Docker counts
// created containers; a shim that does not answer is left out.
func (m *Manager) TaskCounts(ctx context.Context) (map[string]usage.TaskCounts, error) {
	tasks, err := m.Tasks(ctx, true)
	if err != nil {
		return nil, err
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = map[string]usage.TaskCounts{}
	)
	for _, t := range tasks {
		wg.Add(1)
		go func(t *Task) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, t.namespace), stateTimeout)
			defer cancel()
			st, err := t.State(sctx, "")
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			c := out[t.namespace]
			switch st.Status {
			case tasktypes.Status_RUNNING:
				c.Running++
			case tasktypes.Status_PAUSED, tasktypes.Status_PAUSING:
				c.Paused++
			default:
				c.Stopped++
			}
			out[t.namespace] = c
		}(t)
	}
	wg.Wait()
	return out, nil
}
