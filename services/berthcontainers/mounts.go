package berthcontainers

import (
	"github.com/berthd/berth/core/run"
	api "github.com/berthd/berth/proto/berth/containers/v1"
)

// mountsFromProto copies the mount flags of c into o; berthd's create
// parses and checks them.
func mountsFromProto(c *api.Config, o *run.Options) {
	o.MountOptions = run.MountOptions{Binds: c.Binds, MountFlags: c.Mounts, Tmpfs: c.Tmpfs, VolumesFrom: c.VolumesFrom}
}

func mountsToProto(o run.Options, c *api.Config) {
	c.Binds, c.Mounts, c.Tmpfs, c.VolumesFrom = o.Binds, o.MountFlags, o.Tmpfs, o.VolumesFrom
}

// mountPointsToProto describes the mounts create resolved.
func mountPointsToProto(mps []run.MountPoint) []*api.Mount {
	out := make([]*api.Mount, 0, len(mps))
	for _, mp := range mps {
		out = append(out, &api.Mount{
			Type: string(mp.Type), Name: mp.Name(), Source: mp.HostPath, Destination: mp.Destination,
			ReadOnly: mp.ReadOnly, Driver: mp.Driver, Mode: mp.Mode(), Propagation: mp.Propagation,
		})
	}
	return out
}
