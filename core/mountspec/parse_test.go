package mountspec

import (
	"errors"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseVolume(t *testing.T) {
	for spec, want := range map[string]Mount{
		"/data":                    {Type: TypeVolume, Destination: "/data", Anonymous: true},
		"/data/../srv//x/":         {Type: TypeVolume, Destination: "/srv/x", Anonymous: true},
		"cache:/var/cache":         {Type: TypeVolume, Source: "cache", Destination: "/var/cache"},
		"my_vol.1-x:/d:ro":         {Type: TypeVolume, Source: "my_vol.1-x", Destination: "/d", ReadOnly: true},
		"cache:/c:rw,nocopy":       {Type: TypeVolume, Source: "cache", Destination: "/c", NoCopy: true},
		"cache:/c:z":               {Type: TypeVolume, Source: "cache", Destination: "/c", Relabel: "z"},
		"/srv/www:/www":            {Type: TypeBind, Source: "/srv/www", Destination: "/www"},
		"/srv/../etc/:/h:ro":       {Type: TypeBind, Source: "/etc", Destination: "/h", ReadOnly: true},
		"/a:/b:rw,Z":               {Type: TypeBind, Source: "/a", Destination: "/b", Relabel: "Z"},
		"/a:/b:ro,z":               {Type: TypeBind, Source: "/a", Destination: "/b", ReadOnly: true, Relabel: "z"},
		"/a:/b:rslave":             {Type: TypeBind, Source: "/a", Destination: "/b", Propagation: "rslave"},
		"/a:/b:shared,ro,cached":   {Type: TypeBind, Source: "/a", Destination: "/b", Propagation: "shared", ReadOnly: true},
		"/:/host:ro":               {Type: TypeBind, Source: "/", Destination: "/host", ReadOnly: true},
		"v1:/x:consistent,rw,z":    {Type: TypeVolume, Source: "v1", Destination: "/x", Relabel: "z"},
		"/a:/b:rprivate,delegated": {Type: TypeBind, Source: "/a", Destination: "/b", Propagation: "rprivate"},
	} {
		got, err := ParseVolume(spec)
		if err != nil {
			t.Errorf("ParseVolume(%q): %v", spec, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseVolume(%q) = %+v, want %+v", spec, got, want)
		}
	}
}

func TestParseVolumeErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                   `volume "": destination is empty: invalid argument`,
		"data":               `volume "data": destination "data" is not an absolute path: invalid argument`,
		"/":                  `volume "/": destination must not be '/': invalid argument`,
		"/a/..":              `volume "/a/..": destination must not be '/': invalid argument`,
		"v1:/":               `volume "v1:/": destination must not be '/': invalid argument`,
		"v1:rel":             `volume "v1:rel": destination "rel" is not an absolute path: invalid argument`,
		"v1:":                `volume "v1:": destination is empty: invalid argument`,
		":/x":                `volume ":/x": the source before ':' is empty: invalid argument`,
		"a:b:c:d":            `volume "a:b:c:d": too many ':' (want [SOURCE:]DESTINATION[:OPTIONS]): invalid argument`,
		"vv:/x\x00y":         `volume "vv:/x\x00y": destination "/x\x00y" contains a NUL byte: invalid argument`,
		"x:/d":               `volume "x:/d": volume name "x" is invalid: it is shorter than two characters: invalid argument`,
		"./rel:/d":           `volume "./rel:/d": volume name "./rel" is invalid: it contains '/' (a host directory to bind must be an absolute path): invalid argument`,
		"..:/d":              `volume "..:/d": volume name ".." is invalid: it starts with '.' instead of a letter or digit: invalid argument`,
		"a b:/d":             `volume "a b:/d": volume name "a b" is invalid: it contains ' '; only [a-zA-Z0-9_.-] are allowed: invalid argument`,
		"_v:/d":              `volume "_v:/d": volume name "_v" is invalid: it starts with '_' instead of a letter or digit: invalid argument`,
		"v1:/d:":             `volume "v1:/d:": empty option in "": invalid argument`,
		"v1:/d:ro,":          `volume "v1:/d:ro,": empty option in "ro,": invalid argument`,
		"v1:/d:rx":           `volume "v1:/d:rx": unknown option "rx" (ro, rw, z, Z, nocopy, or a propagation such as rslave): invalid argument`,
		"v1:/d:ro,rw":        `volume "v1:/d:ro,rw": options "ro" and "rw" both set the access mode: invalid argument`,
		"v1:/d:z,Z":          `volume "v1:/d:z,Z": options "z" and "Z" both set the relabel: invalid argument`,
		"v1:/d:shared":       `volume "v1:/d:shared": option "shared": propagation applies to bind mounts only: invalid argument`,
		"/a:/d:nocopy":       `volume "/a:/d:nocopy": option "nocopy" applies to volumes only: invalid argument`,
		"/a:/d:slave,rslave": `volume "/a:/d:slave,rslave": options "slave" and "rslave" both set the propagation: invalid argument`,
	} {
		_, err := ParseVolume(spec)
		if err == nil || err.Error() != want {
			t.Errorf("ParseVolume(%q) error\n got: %v\nwant: %s", spec, err, want)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseVolume(%q): %v is not InvalidArgument", spec, err)
		}
	}
}

func TestParseMount(t *testing.T) {
	for spec, want := range map[string]Mount{
		"type=volume,src=data,dst=/data":                 {Type: TypeVolume, Source: "data", Destination: "/data"},
		"dst=/data":                                      {Type: TypeVolume, Destination: "/data", Anonymous: true},
		"target=/data/,readonly":                         {Type: TypeVolume, Destination: "/data", Anonymous: true, ReadOnly: true},
		"source=v1,destination=/d,ro=false":              {Type: TypeVolume, Source: "v1", Destination: "/d"},
		"src=v1,dst=/d,ro=1,volume-nocopy":               {Type: TypeVolume, Source: "v1", Destination: "/d", ReadOnly: true, NoCopy: true},
		"src=v1,dst=/d,volume-nocopy=false":              {Type: TypeVolume, Source: "v1", Destination: "/d"},
		"src=v1,dst=/d,volume-driver=local":              {Type: TypeVolume, Source: "v1", Destination: "/d", Driver: "local"},
		"src=v1,dst=/d,volume-label=a=b,volume-label=c=": {Type: TypeVolume, Source: "v1", Destination: "/d", Labels: map[string]string{"a": "b", "c": ""}},
		`src=v1,dst=/d,"volume-opt=o=size=64m,uid=1000",volume-opt=type=tmpfs,volume-opt=device=tmpfs`: {
			Type: TypeVolume, Source: "v1", Destination: "/d",
			DriverOptions: map[string]string{"o": "size=64m,uid=1000", "type": "tmpfs", "device": "tmpfs"},
		},
		"type=bind,src=/srv,dst=/srv":                        {Type: TypeBind, Source: "/srv", Destination: "/srv"},
		"type=bind,source=/a/../b/,target=/c,readonly=true":  {Type: TypeBind, Source: "/b", Destination: "/c", ReadOnly: true},
		"type=bind,src=/a,dst=/b,bind-propagation=rshared":   {Type: TypeBind, Source: "/a", Destination: "/b", Propagation: "rshared"},
		"type=bind,src=/a,dst=/b,consistency=cached":         {Type: TypeBind, Source: "/a", Destination: "/b"},
		"type=tmpfs,dst=/run":                                {Type: TypeTmpfs, Destination: "/run"},
		"type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1770": {Type: TypeTmpfs, Destination: "/run", TmpfsOptions: []string{"size=67108864", "mode=1770"}},
		"type=tmpfs,dst=/run,tmpfs-mode=700,ro":              {Type: TypeTmpfs, Destination: "/run", TmpfsOptions: []string{"mode=0700"}, ReadOnly: true},
	} {
		got, err := ParseMount(spec)
		if err != nil {
			t.Errorf("ParseMount(%q): %v", spec, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseMount(%q) = %+v, want %+v", spec, got, want)
		}
	}
}

func TestParseMountErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                         `mount "": destination (dst, target) is required: invalid argument`,
		"src=v1":                   `mount "src=v1": destination (dst, target) is required: invalid argument`,
		"type=nfs,dst=/x":          `mount "type=nfs,dst=/x": type "nfs" is not supported (volume, bind or tmpfs): invalid argument`,
		"type=,dst=/x":             `mount "type=,dst=/x": type needs a value: invalid argument`,
		"dst":                      `mount "dst": dst needs a value: invalid argument`,
		"dst=/x,color=red":         `mount "dst=/x,color=red": unknown key "color": invalid argument`,
		"dst=/x,readonly=maybe":    `mount "dst=/x,readonly=maybe": readonly="maybe" is not true or false: invalid argument`,
		"dst=x":                    `mount "dst=x": destination "x" is not an absolute path: invalid argument`,
		"dst=/":                    `mount "dst=/": destination must not be '/': invalid argument`,
		"src=a/b,dst=/x":           `mount "src=a/b,dst=/x": volume name "a/b" is invalid: it contains '/' (a host directory to bind must be an absolute path): invalid argument`,
		"type=bind,dst=/x":         `mount "type=bind,dst=/x": type=bind needs a source (src): invalid argument`,
		"type=bind,src=rel,dst=/x": `mount "type=bind,src=rel,dst=/x": bind source "rel" is not an absolute path: invalid argument`,
		"type=tmpfs,src=x,dst=/x":  `mount "type=tmpfs,src=x,dst=/x": type=tmpfs takes no source: invalid argument`,
		"type=bind,src=/a,dst=/x,bind-propagation=up": `mount "type=bind,src=/a,dst=/x,bind-propagation=up": bind-propagation "up" is not one of rprivate, private, rshared, shared, rslave, slave: invalid argument`,
		"src=v1,dst=/x,bind-propagation=shared":       `mount "src=v1,dst=/x,bind-propagation=shared": bind-propagation applies to type=bind only, not type=volume: invalid argument`,
		"type=bind,src=/a,dst=/x,volume-nocopy":       `mount "type=bind,src=/a,dst=/x,volume-nocopy": volume-nocopy applies to type=volume only, not type=bind: invalid argument`,
		"type=volume,dst=/x,tmpfs-size=1m":            `mount "type=volume,dst=/x,tmpfs-size=1m": tmpfs-size applies to type=tmpfs only, not type=volume: invalid argument`,
		"type=tmpfs,dst=/x,volume-opt=a=b":            `mount "type=tmpfs,dst=/x,volume-opt=a=b": volume-opt applies to type=volume only, not type=tmpfs: invalid argument`,
		"dst=/x,volume-label=novalue":                 `mount "dst=/x,volume-label=novalue": volume-label="novalue" is not KEY=VALUE: invalid argument`,
		"dst=/x,volume-opt==v":                        `mount "dst=/x,volume-opt==v": volume-opt="=v" is not KEY=VALUE: invalid argument`,
		"type=tmpfs,dst=/x,tmpfs-size=big":            `mount "type=tmpfs,dst=/x,tmpfs-size=big": tmpfs-size "big" is not a positive size such as 64m: invalid argument`,
		"type=tmpfs,dst=/x,tmpfs-size=0":              `mount "type=tmpfs,dst=/x,tmpfs-size=0": tmpfs-size "0" is not a positive size such as 64m: invalid argument`,
		"type=tmpfs,dst=/x,tmpfs-mode=0999":           `mount "type=tmpfs,dst=/x,tmpfs-mode=0999": tmpfs-mode "0999": not an octal mode up to 7777: invalid argument`,
		`dst="/x`:                                     `mount "dst=\"/x": parse error on line 1, column 5: bare " in non-quoted-field: invalid argument`,
	} {
		_, err := ParseMount(spec)
		if err == nil || err.Error() != want {
			t.Errorf("ParseMount(%q) error\n got: %v\nwant: %s", spec, err, want)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseMount(%q): %v is not InvalidArgument", spec, err)
		}
	}
}

func TestParseTmpfs(t *testing.T) {
	for spec, want := range map[string]Mount{
		"/run":                               {Type: TypeTmpfs, Destination: "/run"},
		"/run/:rw,noexec,nosuid,size=65536k": {Type: TypeTmpfs, Destination: "/run", TmpfsOptions: []string{"noexec", "nosuid", "size=67108864"}},
		"/t:ro,mode=1777,uid=1000,gid=0":     {Type: TypeTmpfs, Destination: "/t", ReadOnly: true, TmpfsOptions: []string{"mode=1777", "uid=1000", "gid=0"}},
		"/t:size=50%,nr_inodes=1k,huge=within_size,exec": {Type: TypeTmpfs, Destination: "/t", TmpfsOptions: []string{"size=50%", "nr_inodes=1024", "huge=within_size", "exec"}},
	} {
		got, err := ParseTmpfs(spec)
		if err != nil {
			t.Errorf("ParseTmpfs(%q): %v", spec, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseTmpfs(%q) = %+v, want %+v", spec, got, want)
		}
	}
}

func TestParseTmpfsErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":               `tmpfs "": destination is empty: invalid argument`,
		"run":            `tmpfs "run": destination "run" is not an absolute path: invalid argument`,
		"/":              `tmpfs "/": destination must not be '/': invalid argument`,
		"/t:":            `tmpfs "/t:": empty tmpfs option: invalid argument`,
		"/t:size=-1":     `tmpfs "/t:size=-1": tmpfs option "size=-1": size must be positive, such as 64m: invalid argument`,
		"/t:size=0%":     `tmpfs "/t:size=0%": tmpfs option "size=0%": a percentage must be a positive integer: invalid argument`,
		"/t:mode=rwx":    `tmpfs "/t:mode=rwx": tmpfs option "mode=rwx": not an octal mode up to 7777: invalid argument`,
		"/t:uid=root":    `tmpfs "/t:uid=root": tmpfs option "uid=root": uid must be a number: invalid argument`,
		"/t:nr_inodes=x": `tmpfs "/t:nr_inodes=x": tmpfs option "nr_inodes=x": nr_inodes must be a number with an optional k, m or g: invalid argument`,
		"/t:huge=maybe":  `tmpfs "/t:huge=maybe": tmpfs option "huge=maybe": huge is never, always, within_size or advise: invalid argument`,
		"/t:bind":        `tmpfs "/t:bind": unknown tmpfs option "bind": invalid argument`,
		"/t:size":        `tmpfs "/t:size": unknown tmpfs option "size": invalid argument`,
		"/t:size=":       `tmpfs "/t:size=": tmpfs option "size=": size must be positive, such as 64m: invalid argument`,
	} {
		_, err := ParseTmpfs(spec)
		if err == nil || err.Error() != want {
			t.Errorf("ParseTmpfs(%q) error\n got: %v\nwant: %s", spec, err, want)
		}
	}
}
