package cli

import (
	"strings"

	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

// inspectHostMounts are the mount flags in `berth inspect`'s HostConfig,
// as docker shows them: -v values in Binds, --tmpfs values by path.
type inspectHostMounts struct {
	Binds       []string          `json:"Binds"`
	Tmpfs       map[string]string `json:"Tmpfs,omitempty"`
	VolumesFrom []string          `json:"VolumesFrom"`
}

func newInspectHostMounts(cfg *containersapi.Config) inspectHostMounts {
	h := inspectHostMounts{Binds: cfg.Binds, VolumesFrom: cfg.VolumesFrom}
	for _, t := range cfg.Tmpfs {
		if h.Tmpfs == nil {
			h.Tmpfs = map[string]string{}
		}
		path, opts, _ := strings.Cut(t, ":")
		h.Tmpfs[path] = opts
	}
	return h
}
