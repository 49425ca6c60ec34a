package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tarBuilder writes test layers entry by entry.
type tarBuilder struct {
	t   testing.TB
	buf bytes.Buffer
	tw  *tar.Writer
}

var testTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

func newTar(t testing.TB) *tarBuilder {
	b := &tarBuilder{t: t}
	b.tw = tar.NewWriter(&b.buf)
	return b
}

func (b *tarBuilder) add(hdr *tar.Header, body string) *tarBuilder {
	b.t.Helper()
	if hdr.ModTime.IsZero() {
		hdr.ModTime = testTime
	}
	if hdr.Typeflag == tar.TypeReg {
		hdr.Size = int64(len(body))
	}
	if hdr.Format == tar.FormatUnknown {
		hdr.Format = tar.FormatPAX
	}
	if err := b.tw.WriteHeader(hdr); err != nil {
		b.t.Fatalf("tar header %q: %v", hdr.Name, err)
	}
	if body != "" {
		if _, err := io.WriteString(b.tw, body); err != nil {
			b.t.Fatal(err)
		}
	}
	return b
}

func (b *tarBuilder) dir(name string, mode int64) *tarBuilder {
	return b.add(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}, "")
}

func (b *tarBuilder) file(name, body string, mode int64) *tarBuilder {
	return b.add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body)
}

func (b *tarBuilder) symlink(name, target string) *tarBuilder {
	return b.add(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, "")
}

func (b *tarBuilder) link(name, target string) *tarBuilder {
	return b.add(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}, "")
}

func (b *tarBuilder) bytes() []byte {
	b.t.Helper()
	if err := b.tw.Close(); err != nil {
		b.t.Fatal(err)
	}
	return b.buf.Bytes()
}

func (b *tarBuilder) reader() io.Reader { return bytes.NewReader(b.bytes()) }

// sandbox is a temp dir holding root (where layers go) and sentinel, a
// directory beside root with content that no test may change.
type sandbox struct {
	base, root, sentinel string
	before               string
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{base: base, root: filepath.Join(base, "root"), sentinel: filepath.Join(base, "sentinel")}
	for _, d := range []string{s.root, s.sentinel, filepath.Join(s.sentinel, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.sentinel, "file"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.sentinel, "sub", "deep"), []byte("keep me too"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.before = s.outside(t)
	return s
}

// outside describes everything in base except root's contents.
func (s *sandbox) outside(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(s.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == s.root {
			return filepath.SkipDir
		}
		b.WriteString(describe(t, p))
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// checkOutside fails the test if anything beside root changed.
func (s *sandbox) checkOutside(t *testing.T) {
	t.Helper()
	if after := s.outside(t); after != s.before {
		t.Fatalf("content outside root changed:\nbefore:\n%s\nafter:\n%s", s.before, after)
	}
}

// describe renders one path's type, mode, owner, size, link count, times,
// target, device, xattrs and content hash.
func describe(t testing.TB, p string) string {
	t.Helper()
	return describeWith(t, p, false)
}

// describeWith is describe with mtimes in whole seconds when secondsOnly,
// the precision of the layers WriteDiff writes.
func describeWith(t testing.TB, p string, secondsOnly bool) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		s += fmt.Sprintf(" size=%d nlink=%d sha=%s", st.Size, st.Nlink, hex.EncodeToString(sum[:6]))
	case unix.S_IFLNK:
		target, _ := os.Readlink(p)
		s += " -> " + target
	case unix.S_IFCHR, unix.S_IFBLK:
		s += fmt.Sprintf(" dev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if secondsOnly {
			s += fmt.Sprintf(" mtime=%d", st.Mtim.Sec)
		} else {
			s += fmt.Sprintf(" mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
	}
	attrs, err := listXattrs(p)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s += fmt.Sprintf(" %s=%q", k, attrs[k])
	}
	return p + " " + s
}

// treeOf describes every path under dir, relative to it, one per line,
// sorted. Hard links show as shared inode groups.
func treeOf(t testing.TB, dir string) string {
	t.Helper()
	return treeWith(t, dir, false)
}

// treeSecs is treeOf with mtimes in whole seconds.
func treeSecs(t testing.TB, dir string) string {
	t.Helper()
	return treeWith(t, dir, true)
}

func treeWith(t testing.TB, dir string, secondsOnly bool) string {
	t.Helper()
	var lines []string
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := rel + " " + strings.TrimPrefix(describeWith(t, p, secondsOnly), p+" ")
		if rel == "." {
			line = ". " + dirMode(t, p)
		}
		var st unix.Stat_t
		_ = unix.Lstat(p, &st)
		if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				line += " linkto=" + first
			} else {
				inodes[st.Ino] = rel
			}
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func dirMode(t testing.TB, p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("mode=%o", st.Mode)
}

func apply(t *testing.T, root string, layer io.Reader, opts ...ApplyOpt) {
	t.Helper()
	opts = append([]ApplyOpt{WithLogger(quietLogger)}, opts...)
	if _, err := Apply(context.Background(), root, layer, opts...); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// quietLogger keeps expected warnings (dropped overlay xattrs) out of test
// output; tests about logging pass their own.
var quietLogger = slog.New(slog.DiscardHandler)

func lstat(t testing.TB, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
