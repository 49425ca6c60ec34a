package testimages

import (
	"archive/tar"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MultiLayer config values that tests check.
const (
	MultiLayerOutput     = "hello from multilayer" // printed by the default command
	MultiLayerStopSignal = "SIGQUIT"
)

// MultiLayer is a four-layer image named [MultiLayerName]:
//
//  1. [BusyboxLayer].
//  2. adds /app (config.txt "version=1", remove-me.txt, data/{a,b}.txt,
//     data/sub/c.txt, entrypoint.sh, script.sh with the hardlink hard,
//     symlink link -> config.txt, owned.txt (0600, 1000:1000), char device
//     devnull (1,3), directory kind/ with inner.txt), /etc/motd "motd v1"
//     and /usr/share/doc/readme.txt.
//  3. changes config.txt ("version=2", 0640) and /etc/motd ("motd v2"),
//     deletes remove-me.txt and /usr/share/doc by whiteouts, and makes
//     /app/data opaque, keeping only its new.txt.
//  4. replaces the directory /app/kind with a regular file, points
//     /app/link at data/new.txt and adds /app/vol/seed.txt.
//
// The config runs Entrypoint ["/app/entrypoint.sh"] (which execs its
// arguments) with Cmd ["/app/script.sh"] (which prints [MultiLayerOutput]),
// as User "berth" in WorkingDir /app, with Env PATH, APP_MODE=test and
// GREETING=hello world, ExposedPorts 8080/tcp and 53/udp, Volumes /app/vol,
// StopSignal [MultiLayerStopSignal] and Labels org.berth.test=multilayer and
// version=2. History has one entry per layer plus an empty-layer ENV entry
// after the first. [MultiLayerExpected] is the resulting filesystem.
func MultiLayer(opts ...Option) (*Image, error) {
	o := applyOptions(MultiLayerName, opts)
	base, err := BusyboxLayer()
	if err != nil {
		return nil, err
	}
	layers := []Layer{base}
	for i, entries := range multiLayerEntries() {
		l, err := NewLayer(entries...)
		if err != nil {
			return nil, fmt.Errorf("multilayer layer %d: %w", i+2, err)
		}
		layers = append(layers, l)
	}
	return BuildImage(ImageSpec{
		Name:        o.name,
		Layers:      layers,
		Compression: o.compression,
		Config:      multiLayerConfig(),
		History: []ocispec.History{
			{Created: &Epoch, CreatedBy: "busybox-static " + BusyboxPath},
			{Created: &Epoch, CreatedBy: "ENV APP_MODE=test", EmptyLayer: true},
			{Created: &Epoch, CreatedBy: "COPY app /app", Comment: "add"},
			{Created: &Epoch, CreatedBy: "RUN change and delete", Comment: "change"},
			{Created: &Epoch, CreatedBy: "RUN replace", Comment: "replace"},
		},
		Annotations: map[string]string{"org.opencontainers.image.title": "berth multilayer test image"},
	})
}

func multiLayerConfig() ocispec.ImageConfig {
	return ocispec.ImageConfig{
		User:         "berth",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}},
		Env:          []string{DefaultPath, "APP_MODE=test", "GREETING=hello world"},
		Entrypoint:   []string{"/app/entrypoint.sh"},
		Cmd:          []string{"/app/script.sh"},
		Volumes:      map[string]struct{}{"/app/vol": {}},
		WorkingDir:   "/app",
		Labels:       map[string]string{"org.berth.test": "multilayer", "version": "2"},
		StopSignal:   MultiLayerStopSignal,
	}
}

const (
	entrypointScript = "#!/bin/sh\nexec \"$@\"\n"
	helloScript      = "#!/bin/sh\necho " + MultiLayerOutput + "\n"
)

func multiLayerEntries() [][]Entry {
	add := []Entry{
		Dir("app", 0o755),
		File("app/config.txt", []byte("version=1\n"), 0o644),
		File("app/remove-me.txt", []byte("to be deleted\n"), 0o644),
		Dir("app/data", 0o755),
		File("app/data/a.txt", []byte("a\n"), 0o644),
		File("app/data/b.txt", []byte("b\n"), 0o644),
		Dir("app/data/sub", 0o755),
		File("app/data/sub/c.txt", []byte("c\n"), 0o644),
		File("app/entrypoint.sh", []byte(entrypointScript), 0o755),
		File("app/script.sh", []byte(helloScript), 0o755),
		Hardlink("app/hard", "app/script.sh"),
		Symlink("app/link", "config.txt"),
		File("app/owned.txt", []byte("owned by berth\n"), 0o600).Owner(BerthUID, BerthGID),
		CharDev("app/devnull", 1, 3, 0o666),
		Dir("app/kind", 0o755),
		File("app/kind/inner.txt", []byte("inner\n"), 0o644),
		Dir("etc", 0o755),
		File("etc/motd", []byte("motd v1\n"), 0o644),
		File("usr/share/doc/readme.txt", []byte("doc\n"), 0o644),
	}
	change := []Entry{
		Dir("app", 0o755),
		File("app/config.txt", []byte("version=2\n"), 0o640),
		Whiteout("app/remove-me.txt"),
		Dir("app/data", 0o755),
		Opaque("app/data"),
		File("app/data/new.txt", []byte("new\n"), 0o644),
		Dir("etc", 0o755),
		File("etc/motd", []byte("motd v2\n"), 0o644),
		Whiteout("usr/share/doc"),
	}
	replace := []Entry{
		Dir("app", 0o755),
		File("app/kind", []byte("now a file\n"), 0o644),
		Symlink("app/link", "data/new.txt"),
		Dir("app/vol", 0o755),
		File("app/vol/seed.txt", []byte("seed\n"), 0o644),
	}
	return [][]Entry{add, change, replace}
}

// MultiLayerExpected is the filesystem of [MultiLayer] once its layers are
// applied in order: [BusyboxExpected], everything the upper layers add, and
// the paths the whiteouts, the opaque directory and the directory-to-file
// replacement must have removed.
func MultiLayerExpected() Expectation {
	owned := reg("owned by berth\n", 0o600)
	owned.UID, owned.GID = BerthUID, BerthGID
	e := BusyboxExpected()
	for name, entry := range map[string]FSEntry{
		"etc/motd":          reg("motd v2\n", 0o644),
		"app":               dir(0o755),
		"app/config.txt":    reg("version=2\n", 0o640),
		"app/data":          dir(0o755),
		"app/data/new.txt":  reg("new\n", 0o644),
		"app/entrypoint.sh": reg(entrypointScript, 0o755),
		"app/script.sh":     reg(helloScript, 0o755),
		"app/hard":          {Type: tar.TypeLink, Linkname: "app/script.sh"},
		"app/link":          link("data/new.txt"),
		"app/owned.txt":     owned,
		"app/devnull":       {Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3},
		"app/kind":          reg("now a file\n", 0o644),
		"app/vol":           dir(0o755),
		"app/vol/seed.txt":  reg("seed\n", 0o644),
		"usr/share":         dir(0o755),
	} {
		e.Present[name] = entry
	}
	e.Absent = []string{
		"app/remove-me.txt",
		"app/data/a.txt",
		"app/data/b.txt",
		"app/data/sub",
		"app/kind/inner.txt",
		"usr/share/doc",
	}
	return e
}

func reg(data string, mode int64) FSEntry { return FSEntry{Type: tar.TypeReg, Mode: mode, Data: data} }
func dir(mode int64) FSEntry              { return FSEntry{Type: tar.TypeDir, Mode: mode} }
func link(target string) FSEntry          { return FSEntry{Type: tar.TypeSymlink, Linkname: target} }
