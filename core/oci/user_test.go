package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
bob:x:1000:1000:Bob:/home/bob:/bin/sh

alice:x:1001:1001::/:/bin/sh
broken line
daemon:x:2:2
`
	testGroup = `root:x:0:
wheel:x:10:root,bob
audio:x:29:bob,alice
bob:x:1000:
alice:x:1001:
staff:x:50:
`
)

// userRootfs returns a rootfs with testPasswd and testGroup.
func userRootfs(t *testing.T) string {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/passwd"), testPasswd)
	writeFile(t, filepath.Join(root, "etc/group"), testGroup)
	return root
}

func TestResolveUser(t *testing.T) {
	root := userRootfs(t)
	tests := []struct {
		user string
		want specs.User
	}{
		{"", specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}},
		{"root", specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}},
		{"bob", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 29}}},
		{"1000", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 29}}},
		{"alice", specs.User{UID: 1001, GID: 1001, AdditionalGids: []uint32{1001, 29}}},
		{"daemon", specs.User{UID: 2, GID: 2, AdditionalGids: []uint32{2}}},
		{"bob:staff", specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{50}}},
		{"bob:50", specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{50}}},
		{"1001:wheel", specs.User{UID: 1001, GID: 10, AdditionalGids: []uint32{10}}},
		{"1000:1000", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000}}},
		{"2000", specs.User{UID: 2000, GID: 0, AdditionalGids: []uint32{0}}},
		{"2000:3000", specs.User{UID: 2000, GID: 3000, AdditionalGids: []uint32{3000}}},
		{"alice:7", specs.User{UID: 1001, GID: 7, AdditionalGids: []uint32{7}}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			got, err := ResolveUser(root, tt.user)
			if err != nil {
				t.Fatal(err)
			}
			if got.UID != tt.want.UID || got.GID != tt.want.GID || !slices.Equal(got.AdditionalGids, tt.want.AdditionalGids) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestResolveUserErrors(t *testing.T) {
	root := userRootfs(t)
	tests := []struct{ user, bad string }{
		{"nobody", "nobody"},
		{"bob:nogroup", "nogroup"},
		{"bob:", "bob:"},
		{":50", ":50"},
		{"a:b:c", "a:b:c"},
		{"4294967296", "4294967296"},
		{"2147483648", "2147483648"},
		{"bob:99999999999", "99999999999"},
		{"-1", "-1"},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			_, err := ResolveUser(root, tt.user)
			wantInvalid(t, err, tt.bad)
		})
	}
}

func TestResolveUserWithoutFiles(t *testing.T) {
	for _, root := range []string{"", t.TempDir()} {
		u, err := ResolveUser(root, "1000:50")
		if err != nil || u.UID != 1000 || u.GID != 50 || !slices.Equal(u.AdditionalGids, []uint32{50}) {
			t.Errorf("rootfs %q: 1000:50 → %+v, %v", root, u, err)
		}
		u, err = ResolveUser(root, "")
		if err != nil || u.UID != 0 || u.GID != 0 {
			t.Errorf("rootfs %q: root → %+v, %v", root, u, err)
		}
		_, err = ResolveUser(root, "bob")
		wantInvalid(t, err, "bob")
		_, err = ResolveUser(root, "1:wheel")
		wantInvalid(t, err, "wheel")
	}
	if _, err := ResolveUser(filepath.Join(t.TempDir(), "missing"), "0"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing rootfs: %v, want ErrNotFound", err)
	}
}

// outsideEtc makes a host directory with a passwd and group naming an
// "evil" user and group that exist only outside the rootfs.
func outsideEtc(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "etc")
	writeFile(t, filepath.Join(dir, "passwd"), "evil:x:4242:4242::/:/bin/sh\n")
	writeFile(t, filepath.Join(dir, "group"), "evilgroup:x:4343:\n")
	return dir
}

func TestResolveUserStaysInRootfs(t *testing.T) {
	outside := outsideEtc(t)
	links := map[string]func(root string) (link, target string){
		"absolute etc link": func(root string) (string, string) {
			return filepath.Join(root, "etc"), outside
		},
		"relative etc link": func(root string) (string, string) {
			rel, err := filepath.Rel(root, outside)
			if err != nil {
				t.Fatal(err)
			}
			return filepath.Join(root, "etc"), "../../../../../../../" + rel
		},
		"passwd link": func(root string) (string, string) {
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(root, "etc/passwd"), filepath.Join(outside, "passwd")
		},
	}
	for name, mk := range links {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			link, target := mk(root)
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			_, err := ResolveUser(root, "evil")
			wantInvalid(t, err, "evil")
			u, err := ResolveUser(root, "4242")
			if err != nil || u.GID != 0 {
				t.Fatalf("uid 4242 → %+v, %v: the host's passwd was read", u, err)
			}
			_, err = ResolveUser(root, "0:evilgroup")
			if name != "passwd link" {
				wantInvalid(t, err, "evilgroup")
			}
		})
	}
}

func TestResolveUserLinkInsideRootfs(t *testing.T) {
	// An absolute link is resolved against the rootfs, as the container
	// would see it.
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "usr/share/etc/passwd"), testPasswd)
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/share/etc/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	u, err := ResolveUser(root, "bob")
	if err != nil || u.UID != 1000 {
		t.Fatalf("bob → %+v, %v", u, err)
	}
}

func TestResolveUserRefusesSpecialFiles(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ResolveUser(root, "bob"); done <- err }()
	select {
	case err := <-done:
		wantInvalid(t, err, "not a regular file")
	case <-time.After(10 * time.Second):
		t.Fatal("reading a FIFO passwd blocked")
	}
}

func TestWithUserAndGroups(t *testing.T) {
	root := userRootfs(t)
	s := gen(t, WithUser(root, "alice"), WithAdditionalGroups(root, "staff", "29", "777"))
	if u := s.Process.User; u.UID != 1001 || !slices.Equal(u.AdditionalGids, []uint32{1001, 29, 50, 777}) {
		t.Fatalf("user %+v", u)
	}
	_, err := Generate(context.Background(), "ns", "id", WithAdditionalGroups(root, "nogroup"))
	wantInvalid(t, err, "nogroup")
	_, err = Generate(context.Background(), "ns", "id", WithUser(root, "ghost"))
	wantInvalid(t, err, "ghost")
}
