package cli

import (
	"github.com/spf13/pflag"

	"github.com/berthd/berth/core/mountspec"
	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

// mountFlags are the mount settings of `berth create` and `berth run`.
type mountFlags struct {
	volumes, mounts, tmpfs, volumesFrom []string
}

func (f *mountFlags) register(fl *pflag.FlagSet) {
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "mount a volume: NAME:/path[:ro] (created on first use), /path (anonymous), or bind /host/path:/path[:ro|rw][,z]")
	fl.StringArrayVar(&f.mounts, "mount", nil, "mount: type=volume|bind|tmpfs,src=SOURCE,dst=/path[,readonly][,tmpfs-size=64m][,tmpfs-mode=1777]")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs: /path[:size=64m,mode=1777,...]")
	fl.StringArrayVar(&f.volumesFrom, "volumes-from", nil, "mount the volumes and binds of a container: CONTAINER[:ro|rw]")
}

// apply checks the flags' syntax, before any image is pulled (exit code
// 125), and writes them into cfg. berthd checks the rest: that bind
// sources exist, that drivers are loaded, the --volumes-from containers.
func (f *mountFlags) apply(cfg *containersapi.Config) error {
	for _, group := range []struct {
		flag   string
		values []string
		parse  func(string) (mountspec.Mount, error)
	}{{"--volume", f.volumes, mountspec.ParseVolume}, {"--mount", f.mounts, mountspec.ParseMount}, {"--tmpfs", f.tmpfs, mountspec.ParseTmpfs}} {
		for _, v := range group.values {
			if _, err := group.parse(v); err != nil {
				return usageError("invalid value for %s: %v", group.flag, cleanErr(err))
			}
		}
	}
	for _, v := range f.volumesFrom {
		if _, _, err := mountspec.ParseVolumesFrom(v); err != nil {
			return usageError("invalid value for --volumes-from: %v", cleanErr(err))
		}
	}
	cfg.Binds, cfg.Mounts, cfg.Tmpfs, cfg.VolumesFrom = f.volumes, f.mounts, f.tmpfs, f.volumesFrom
	return nil
}
