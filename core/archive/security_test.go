package archive

import (
	"archive/tar"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testutil/require"
)

func TestApplySecurity(t *testing.T) { runSecurityCases(t) }

// TestApplySecurityWithoutOpenat2 runs the same cases through the userspace
// resolution used on kernels older than 5.6.
func TestApplySecurityWithoutOpenat2(t *testing.T) {
	noOpenat2.Store(true)
	defer noOpenat2.Store(false)
	runSecurityCases(t)
}

// Each case is a crafted layer that tries to reach outside root. Whether it
// is refused with an error or lands harmlessly inside root, nothing beside
// root may change.
func runSecurityCases(t *testing.T) {
	type result struct {
		err   string   // substring of the expected error; "" means success
		in    []string // paths that must exist under root afterwards
		notIn []string // paths that must not exist under root
	}
	cases := map[string]struct {
		layer func(t *testing.T, s *sandbox) []byte
		want  result
	}{
		"dotdot file": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file("../sentinel/file", "pwned", 0o644).bytes()
			},
			result{err: "../sentinel/file"},
		},
		"dotdot in the middle": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file("a/b/../../../sentinel/new", "pwned", 0o644).bytes()
			},
			result{err: "a/b/../../../sentinel/new"},
		},
		"dotdot that stays inside": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file("a/../b", "fine", 0o644).bytes()
			},
			result{in: []string{"b"}, notIn: []string{"a"}},
		},
		"absolute path": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file("/etc/berth-archive-test", "inside", 0o644).
					file(s.sentinel+"/file", "inside", 0o644).bytes()
			},
			result{in: []string{"etc/berth-archive-test", "tmp"}},
		},
		"absolute symlink then file through it": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("evil", s.sentinel).file("evil/file", "pwned", 0o644).bytes()
			},
			result{err: "evil/file"},
		},
		"relative symlink climbing out then file through it": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("evil", "../sentinel").file("evil/new", "pwned", 0o644).bytes()
			},
			result{err: "evil/new"},
		},
		"symlink to / then file through it lands in root": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("up", "../../../..").dir("sentinel/", 0o755).file("up/sentinel/file", "inside", 0o644).bytes()
			},
			result{in: []string{"sentinel/file", "up"}},
		},
		"symlink chain leaving root": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("a", "b").symlink("b", "../"+filepath.Base(s.sentinel)).file("a/file", "pwned", 0o644).bytes()
			},
			result{err: "a/file"},
		},
		"symlink then directory through it": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("evil", s.sentinel).dir("evil/sub/", 0o777).bytes()
			},
			result{err: "evil/sub/"},
		},
		"symlink replaced by file is not followed": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("f", s.sentinel+"/file").file("f", "replaced", 0o644).bytes()
			},
			result{in: []string{"f"}},
		},
		"symlink loop": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("a", "b").symlink("b", "a").file("a/file", "x", 0o644).bytes()
			},
			result{err: "symlink loop"},
		},
		"self symlink loop": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("loop", "loop").file("loop/x", "x", 0o644).bytes()
			},
			result{err: "loop/x"},
		},
		"hardlink escaping with dotdot": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).link("h", "../sentinel/file").bytes()
			},
			result{err: "../sentinel/file"},
		},
		"hardlink to absolute outside path": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).link("h", s.sentinel+"/file").bytes()
			},
			result{err: `"h"`},
		},
		"hardlink through symlink": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("evil", s.sentinel).link("h", "evil/file").bytes()
			},
			result{err: "evil/file"},
		},
		"hardlink to outside-pointing symlink links the symlink": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("evil", s.sentinel+"/file").link("h", "evil").file("h", "overwrite", 0o644).bytes()
			},
			result{in: []string{"h", "evil"}},
		},
		"file written over hardlink of outside-pointing symlink": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("evil", s.sentinel).link("h", "evil").file("h/file", "pwned", 0o644).bytes()
			},
			result{err: "h/file"},
		},
		"whiteout dotdot": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file("a/.wh...", "", 0).bytes()
			},
			result{err: "not a valid name"},
		},
		"whiteout dot": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file(".wh..", "", 0).bytes()
			},
			result{err: "not a valid name"},
		},
		"whiteout empty": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file(".wh.", "", 0).bytes()
			},
			result{err: "not a valid name"},
		},
		"whiteout escaping with dotdot": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file("../sentinel/.wh.file", "", 0).bytes()
			},
			result{err: "../sentinel/.wh.file"},
		},
		"whiteout through symlink": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("evil", s.sentinel).file("evil/.wh.file", "", 0).file("evil/.wh.sub", "", 0).bytes()
			},
			result{in: []string{"evil"}},
		},
		"opaque through symlink": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).symlink("evil", s.sentinel).file("evil/.wh..wh..opq", "", 0).
					symlink("up", "../..").file("up/.wh..wh..opq", "", 0).bytes()
			},
			// "up" resolves to root itself, so its opaque marker empties
			// root (of everything, the layer's own "up" too, as that is
			// not in up/): odd but contained.
			result{notIn: []string{"evil"}},
		},
		"whiteout of the root's parent": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file(".wh.sentinel", "", 0).file("../.wh.sentinel", "", 0).bytes()
			},
			result{err: "../.wh.sentinel"},
		},
		"entry whose parent is a file": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file("f", "x", 0o644).file("f/g", "y", 0o644).bytes()
			},
			result{err: "not a directory"},
		},
		"long name climbing out": {
			func(t *testing.T, s *sandbox) []byte {
				return newTar(t).file(strings.Repeat("../", 200)+"sentinel/file", "pwned", 0o644).bytes()
			},
			result{err: "escapes the root"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			layer := tc.layer(t, s)
			_, err := Apply(context.Background(), s.root, bytesReader(layer))
			switch {
			case tc.want.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want.err != "" && err == nil:
				t.Fatalf("no error, want one with %q", tc.want.err)
			case tc.want.err != "" && !strings.Contains(err.Error(), tc.want.err):
				t.Fatalf("error %q does not contain %q", err, tc.want.err)
			}
			for _, p := range tc.want.in {
				if !exists(filepath.Join(s.root, p)) {
					t.Errorf("%s missing under root", p)
				}
			}
			for _, p := range tc.want.notIn {
				if exists(filepath.Join(s.root, p)) {
					t.Errorf("%s exists under root", p)
				}
			}
			s.checkOutside(t)
			if exists("/etc/berth-archive-test") {
				t.Fatal("absolute name written to the host's /etc")
			}
		})
	}
}

func TestApplyEscapeErrorsAreInvalidArgument(t *testing.T) {
	s := newSandbox(t)
	_, err := Apply(context.Background(), s.root, newTar(t).file("../x", "x", 0o644).reader())
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("error %v is not ErrInvalidArgument", err)
	}
	s.checkOutside(t)
}

func TestApplySetuidOnlyAsTarSays(t *testing.T) {
	require.Root(t)
	s := newSandbox(t)
	// A setgid directory passes its group and setgid bit to new children;
	// the tar's modes must win anyway.
	apply(t, s.root, newTar(t).
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "sg/", Mode: 0o2775, Gid: 50}, "").
		add(&tar.Header{Typeflag: tar.TypeDir, Name: "sg/plain/", Mode: 0o755, Gid: 0}, "").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "sg/file", Mode: 0o644, Uid: 1, Gid: 0}, "x").
		add(&tar.Header{Typeflag: tar.TypeReg, Name: "suid", Mode: 0o6755, Uid: 1000, Gid: 1000}, "x").
		reader())
	want := map[string]uint32{"sg": unix.S_IFDIR | 0o2775, "sg/plain": unix.S_IFDIR | 0o755, "sg/file": unix.S_IFREG | 0o644, "suid": unix.S_IFREG | 0o6755}
	for rel, mode := range want {
		if st := lstat(t, filepath.Join(s.root, rel)); st.Mode != mode {
			t.Errorf("%s mode %o, want %o", rel, st.Mode, mode)
		}
	}
	if st := lstat(t, filepath.Join(s.root, "sg/file")); st.Gid != 0 {
		t.Errorf("sg/file gid %d, want the tar's 0", st.Gid)
	}
	s.checkOutside(t)
}

func TestApplyDevicesAndOwnershipOutsideUntouched(t *testing.T) {
	require.Root(t)
	s := newSandbox(t)
	// A device node named through an escaping symlink must not appear
	// outside.
	_, err := Apply(context.Background(), s.root, newTar(t).
		symlink("dev", s.sentinel).
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/mem", Mode: 0o666, Devmajor: 1, Devminor: 1}, "").
		reader())
	if err == nil {
		t.Fatal("device through escaping symlink applied without error")
	}
	s.checkOutside(t)
	if _, err := os.Lstat(filepath.Join(s.sentinel, "mem")); err == nil {
		t.Fatal("device node created outside root")
	}
}

// TestApplySkipsDevicesWithoutCapMknod re-runs the test binary without
// CAP_MKNOD: device nodes are skipped with a logged reason, FIFOs and files
// still made.
func TestApplySkipsDevicesWithoutCapMknod(t *testing.T) {
	if os.Getenv("BERTH_ARCHIVE_NOMKNOD_CHILD") == "1" {
		applyWithoutMknod(t)
		return
	}
	require.Root(t)
	setpriv := require.Binary(t, "setpriv")
	cmd := exec.Command(setpriv, "--bounding-set=-mknod", "--inh-caps=-mknod", os.Args[0], "-test.run=^TestApplySkipsDevicesWithoutCapMknod$", "-test.v")
	cmd.Env = append(os.Environ(), "BERTH_ARCHIVE_NOMKNOD_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func applyWithoutMknod(t *testing.T) {
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	root := t.TempDir()
	apply(t, root, newTar(t).
		add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, "").
		add(&tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8}, "").
		add(&tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o600}, "").
		file("etc/after", "still applied", 0o644).
		reader(), WithLogger(logger))
	if exists(filepath.Join(root, "dev/null")) || exists(filepath.Join(root, "dev/sda")) {
		t.Fatal("device nodes created without CAP_MKNOD: the test premise failed")
	}
	if !exists(filepath.Join(root, "dev/fifo")) || !exists(filepath.Join(root, "etc/after")) {
		t.Fatal("entries after the skipped devices are missing")
	}
	if !strings.Contains(logs.String(), "skipping device node") || !strings.Contains(logs.String(), "dev/null") {
		t.Fatalf("no logged reason: %s", logs.String())
	}
}
