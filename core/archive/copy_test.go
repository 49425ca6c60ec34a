package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func tarPath(t *testing.T, root, path string, opts ...CopyOpt) ([]string, error) {
	t.Helper()
	var buf bytes.Buffer
	if err := TarPath(context.Background(), &buf, root, path, opts...); err != nil {
		return nil, err
	}
	var names []string
	for n := range tarNames(t, buf.Bytes()) {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func TestTarPath(t *testing.T) {
	s := newSandbox(t)
	apply(t, s.root, newTar(t).
		dir("etc/", 0o755).file("etc/hosts", "127.0.0.1 localhost\n", 0o644).
		dir("etc/ssl/", 0o755).file("etc/ssl/cert", "c", 0o644).
		symlink("hosts", "/etc/hosts").
		symlink("escape", s.sentinel).
		symlink("up", "../../..").
		reader())
	cases := []struct {
		path   string
		opts   []CopyOpt
		want   string
		errIs  error
		reason string
	}{
		{path: "/etc/hosts", want: "hosts"},
		{path: "etc", want: "etc/ etc/hosts etc/ssl/ etc/ssl/cert"},
		{path: "/hosts", want: "hosts"}, // the link itself
		{path: "/hosts", opts: []CopyOpt{WithFollowLink()}, want: "hosts"},
		{path: "/up/etc/ssl", want: "ssl/ ssl/cert"}, // ../../.. stops at root
		{path: "/escape", opts: []CopyOpt{WithFollowLink()}, errIs: errdefs.ErrNotFound},
		{path: "/escape/file", errIs: errdefs.ErrNotFound},
		{path: "/nothere", errIs: errdefs.ErrNotFound},
		{path: "../sentinel/file", errIs: errdefs.ErrInvalidArgument},
	}
	for _, tc := range cases {
		names, err := tarPath(t, s.root, tc.path, tc.opts...)
		if tc.errIs != nil {
			if !errors.Is(err, tc.errIs) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("TarPath(%q): err %v, want %v naming the path", tc.path, err, tc.errIs)
			}
			continue
		}
		if err != nil {
			t.Errorf("TarPath(%q): %v", tc.path, err)
			continue
		}
		if got := strings.Join(names, " "); got != tc.want {
			t.Errorf("TarPath(%q) = %s, want %s", tc.path, got, tc.want)
		}
	}
	// A followed link's content is the target's.
	var buf bytes.Buffer
	if err := TarPath(context.Background(), &buf, s.root, "/hosts", WithFollowLink()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte("127.0.0.1 localhost")) {
		t.Error("followed link did not carry the target's content")
	}
	whole, err := tarPath(t, s.root, "/")
	if err != nil || strings.Join(whole, " ") != "escape etc/ etc/hosts etc/ssl/ etc/ssl/cert hosts up" {
		t.Errorf("TarPath(/) = %v, %v", whole, err)
	}
	s.checkOutside(t)
}

func TestUntarInto(t *testing.T) {
	s := newSandbox(t)
	apply(t, s.root, newTar(t).
		dir("data/", 0o755).
		symlink("link", "/data").
		symlink("escape", s.sentinel).
		dir("usr/", 0o755).symlink("usr/lib", "/opt/lib").dir("opt/", 0o755).dir("opt/lib/", 0o755).
		reader())
	untar := func(dest string, layer []byte) error {
		_, err := UntarInto(context.Background(), s.root, dest, bytes.NewReader(layer))
		return err
	}
	if err := untar("/data", newTar(t).file("a", "a", 0o644).file(".wh.b", "literal", 0o644).dir("sub/", 0o700).bytes()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"data/a", "data/.wh.b", "data/sub"} {
		if !exists(filepath.Join(s.root, p)) {
			t.Errorf("%s missing", p)
		}
	}
	// A destination that is a symlink is followed inside root.
	if err := untar("/link", newTar(t).file("via-link", "x", 0o644).bytes()); err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(s.root, "data/via-link")) {
		t.Error("data/via-link missing")
	}
	// Symlinks below dest resolve as the container sees them.
	if err := untar("/usr", newTar(t).file("lib/libx.so", "x", 0o644).bytes()); err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(s.root, "opt/lib/libx.so")) {
		t.Error("file written through usr/lib did not land in opt/lib")
	}
	for name, tc := range map[string]struct {
		dest  string
		layer []byte
	}{
		"dotdot above dest":   {"/data", newTar(t).file("../outside-dest", "x", 0o644).bytes()},
		"dotdot above root":   {"/data", newTar(t).file("../../sentinel/file", "x", 0o644).bytes()},
		"dest through escape": {"/escape", newTar(t).file("file", "pwned", 0o644).bytes()},
		"dest climbing out":   {"../sentinel", newTar(t).file("file", "pwned", 0o644).bytes()},
		"link out of dest":    {"/data", newTar(t).link("h", "../link").bytes()},
	} {
		if err := untar(tc.dest, tc.layer); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if exists(filepath.Join(s.root, "outside-dest")) {
		t.Error("entry escaped its destination")
	}
	s.checkOutside(t)
	if _, err := os.Stat(filepath.Join(s.root, "data")); err != nil {
		t.Fatal(err)
	}
}
