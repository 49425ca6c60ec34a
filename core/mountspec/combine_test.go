package mountspec

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestImageVolumes(t *testing.T) {
	got, err := ImageVolumes(map[string]struct{}{"/var/lib/db/": {}, "/var/lib/db": {}, "data": {}, "/a/../b": {}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{Type: TypeVolume, Destination: "/b", Anonymous: true},
		{Type: TypeVolume, Destination: "/data", Anonymous: true},
		{Type: TypeVolume, Destination: "/var/lib/db", Anonymous: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ImageVolumes = %+v, want %+v", got, want)
	}
	if _, err := ImageVolumes(map[string]struct{}{"/..": {}}); err == nil || err.Error() != `image volume "/..": destination must not be '/': invalid argument` {
		t.Errorf("root image volume: %v", err)
	}
	if m, err := ImageVolumes(nil); err != nil || m != nil {
		t.Errorf("no volumes: %v %v", m, err)
	}
}

func TestVolumesFrom(t *testing.T) {
	for spec, want := range map[string][2]string{
		"web":       {"web", ""},
		"web:ro":    {"web", "ro"},
		"abc123:rw": {"abc123", "rw"},
	} {
		c, mode, err := ParseVolumesFrom(spec)
		if err != nil || c != want[0] || mode != want[1] {
			t.Errorf("ParseVolumesFrom(%q) = %q, %q, %v", spec, c, mode, err)
		}
	}
	for spec, want := range map[string]string{
		":ro":      `volumes-from ":ro": the container is empty: invalid argument`,
		"":         `volumes-from "": the container is empty: invalid argument`,
		"web:rx":   `volumes-from "web:rx": mode "rx" is not ro or rw: invalid argument`,
		"web:ro:z": `volumes-from "web:ro:z": mode "ro:z" is not ro or rw: invalid argument`,
	} {
		if _, _, err := ParseVolumesFrom(spec); err == nil || err.Error() != want {
			t.Errorf("ParseVolumesFrom(%q) error\n got: %v\nwant: %s", spec, err, want)
		}
	}

	from := []Mount{
		{Type: TypeVolume, Source: "0123abcd", Destination: "/anon", Anonymous: true},
		{Type: TypeVolume, Source: "named", Destination: "/named", ReadOnly: true, Labels: map[string]string{"a": "b"}},
		{Type: TypeBind, Source: "/srv", Destination: "/srv"},
		{Type: TypeTmpfs, Destination: "/run"},
	}
	keep := InheritMounts(from, "")
	want := []Mount{
		{Type: TypeVolume, Source: "0123abcd", Destination: "/anon"},
		{Type: TypeVolume, Source: "named", Destination: "/named", ReadOnly: true, Labels: map[string]string{"a": "b"}},
		{Type: TypeBind, Source: "/srv", Destination: "/srv"},
	}
	if !reflect.DeepEqual(keep, want) {
		t.Errorf("InheritMounts(\"\") = %+v, want %+v", keep, want)
	}
	keep[1].Labels["a"] = "changed"
	if from[1].Labels["a"] != "b" {
		t.Error("InheritMounts shares label maps with its input")
	}
	for _, m := range InheritMounts(from, "ro") {
		if !m.ReadOnly {
			t.Errorf("ro: %+v is writable", m)
		}
	}
	for _, m := range InheritMounts(from, "rw") {
		if m.ReadOnly {
			t.Errorf("rw: %+v is read-only", m)
		}
	}
}

func TestCombine(t *testing.T) {
	user := []Mount{
		{Type: TypeBind, Source: "/h", Destination: "/data"},
		{Type: TypeTmpfs, Destination: "/run"},
	}
	inherited := []Mount{
		{Type: TypeVolume, Source: "shared", Destination: "/data"},
		{Type: TypeVolume, Source: "logs", Destination: "/logs"},
	}
	image := []Mount{
		{Type: TypeVolume, Destination: "/logs", Anonymous: true},
		{Type: TypeVolume, Destination: "/cache", Anonymous: true},
		{Type: TypeVolume, Destination: "/run", Anonymous: true},
	}
	got, err := Combine(user, inherited, image)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{user[0], user[1], inherited[1], image[1]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Combine = %+v\nwant %+v", got, want)
	}
	_, err = Combine([]Mount{{Type: TypeVolume, Source: "a1", Destination: "/d"}, {Type: TypeTmpfs, Destination: "/d"}}, nil, nil)
	if err == nil || err.Error() != "duplicate mount point /d: invalid argument" {
		t.Errorf("duplicate user mounts: %v", err)
	}
}

func TestSpecMount(t *testing.T) {
	for name, c := range map[string]struct {
		m        Mount
		src, dst string
		want     specs.Mount
	}{
		"volume": {Mount{Type: TypeVolume, Source: "v1", Destination: "/data"}, "/var/lib/v1/_data", "/data",
			specs.Mount{Destination: "/data", Type: "bind", Source: "/var/lib/v1/_data", Options: []string{"rbind", "rprivate"}}},
		"read-only bind with propagation": {Mount{Type: TypeBind, Source: "/srv", Destination: "/x", ReadOnly: true, Propagation: "rslave"}, "/srv", "/y",
			specs.Mount{Destination: "/y", Type: "bind", Source: "/srv", Options: []string{"rbind", "ro", "rslave"}}},
		"tmpfs defaults": {Mount{Type: TypeTmpfs, Destination: "/run"}, "", "/run",
			specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"noexec", "nosuid", "nodev"}}},
		"tmpfs options override defaults": {Mount{Type: TypeTmpfs, Destination: "/t", ReadOnly: true, TmpfsOptions: []string{"exec", "size=1024", "mode=0700", "size=2048"}}, "", "/t",
			specs.Mount{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "exec", "mode=0700", "size=2048", "ro"}}},
	} {
		if got := c.m.SpecMount(c.src, c.dst); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: SpecMount = %+v, want %+v", name, got, c.want)
		}
	}
}
