package testimages

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SymlinkData is [Busybox] plus a layer with the absolute symlink
// /data -> /etc, named [SymlinkDataName]. A runtime that resolves /data (a
// volume or mount destination, a copy target) on the host instead of inside
// the root filesystem touches the host's /etc.
func SymlinkData(opts ...Option) (*Image, error) {
	o := applyOptions(SymlinkDataName, opts)
	base, err := BusyboxLayer()
	if err != nil {
		return nil, err
	}
	l, err := NewLayer(Symlink("data", "/etc"))
	if err != nil {
		return nil, err
	}
	return BuildImage(ImageSpec{
		Name:        o.name,
		Layers:      []Layer{base, l},
		Compression: o.compression,
		Config:      ocispec.ImageConfig{Env: []string{DefaultPath}, Cmd: []string{"sh"}},
	})
}

// SecretName is the file an [EvilLayer] test creates in the outside
// directory before applying the layer.
const SecretName = "secret"

// EvilLayer is a hostile layer. Every escape it attempts aims at the
// directory outside given to [EvilLayers]; the test creates outside/secret
// ([SecretName]) first. After applying the layer (on top of any base) to a
// root filesystem elsewhere, a safe applier either failed or kept everything
// inside the root: outside then keeps its mode and holds only secret, with
// its content, mode and a link count of 1 (no hard link to it from the
// root). [CheckOutside] checks exactly that.
type EvilLayer struct {
	Name  string
	Layer Layer
}

// escapeDepth is enough "../" to climb from any test root to "/".
const escapeDepth = 32

// EvilLayers returns layers that try to write, link or delete outside the
// root filesystem through "../" names, absolute names, symlinks and hard
// links out of the root, and whiteouts. outside must be an absolute path.
func EvilLayers(outside string) ([]EvilLayer, error) {
	if !path.IsAbs(outside) {
		return nil, fmt.Errorf("outside %q must be absolute: %w", outside, errdefs.ErrInvalidArgument)
	}
	up := strings.Repeat("../", escapeDepth)
	rel := up + strings.TrimPrefix(outside, "/") // outside, seen from any root
	secret := path.Join(outside, SecretName)
	relSecret := path.Join(rel, SecretName)
	file := func(name, data string) Entry {
		return Raw(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, []byte(data))
	}
	symlink := func(name, target string) Entry {
		return Raw(tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil)
	}
	hardlink := func(name, target string) Entry {
		return Raw(tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}, nil)
	}
	cases := []struct {
		name    string
		entries []Entry
	}{
		{"dotdot-file", []Entry{file(path.Join(rel, "dotdot"), "escaped\n")}},
		{"dotdot-inner", []Entry{file("bin/../"+path.Join(rel, "inner"), "escaped\n")}},
		{"absolute-file", []Entry{file(path.Join(outside, "absolute"), "escaped\n")}},
		{"overwrite-dotdot", []Entry{file(relSecret, "overwritten\n")}},
		{"symlink-absolute-dir", []Entry{symlink("escape", outside), file("escape/via-absolute", "escaped\n")}},
		{"symlink-relative-dir", []Entry{symlink("escape", rel), file("escape/via-relative", "escaped\n")}},
		{"symlink-chain", []Entry{symlink("b", outside), symlink("a", "b"), file("a/via-chain", "escaped\n")}},
		{"symlink-then-overwrite", []Entry{symlink("s", secret), file("s", "overwritten\n")}},
		{"symlink-dotdot-then-overwrite", []Entry{symlink("s", relSecret), file("s", "overwritten\n")}},
		{"hardlink-absolute", []Entry{hardlink("h", secret)}},
		{"hardlink-relative", []Entry{hardlink("h", relSecret)}},
		{"hardlink-via-symlink", []Entry{symlink("l", outside), hardlink("h", "l/"+SecretName)}},
		{"whiteout-dotdot", []Entry{file(path.Join(rel, WhiteoutPrefix+SecretName), "")}},
		{"whiteout-via-symlink", []Entry{symlink("l", outside), file("l/"+WhiteoutPrefix+SecretName, "")}},
		{"opaque-dotdot", []Entry{file(path.Join(rel, OpaqueMarker), "")}},
		{"opaque-via-symlink", []Entry{symlink("l", outside), file("l/"+OpaqueMarker, "")}},
		{"chmod-via-symlink", []Entry{symlink("l", outside), Raw(tar.Header{Typeflag: tar.TypeDir, Name: "l/", Mode: 0o777}, nil)}},
	}
	layers := make([]EvilLayer, 0, len(cases))
	for _, c := range cases {
		l, err := RawLayer(c.entries...)
		if err != nil {
			return nil, fmt.Errorf("evil layer %s: %w", c.name, err)
		}
		layers = append(layers, EvilLayer{Name: c.name, Layer: l})
	}
	return layers, nil
}

const (
	secretData  = "do not touch\n"
	secretMode  = 0o640
	outsideMode = 0o750
)

// PrepareOutside sets up outside (an existing directory) for an
// [EvilLayer] test: mode 0750 and a file secret.
func PrepareOutside(outside string) error {
	if err := os.Chmod(outside, outsideMode); err != nil {
		return fmt.Errorf("prepare outside: %w", err)
	}
	if err := os.WriteFile(filepath.Join(outside, SecretName), []byte(secretData), secretMode); err != nil {
		return fmt.Errorf("prepare outside: %w", err)
	}
	return nil
}

// CheckOutside reports every way outside differs from what
// [PrepareOutside] left: a mode change, new or missing entries, and a
// changed, re-moded or hard-linked secret.
func CheckOutside(outside string) error {
	var errs []error
	if fi, err := os.Lstat(outside); err != nil {
		return fmt.Errorf("outside: %w", err)
	} else if fi.Mode().Perm() != outsideMode || !fi.IsDir() {
		errs = append(errs, fmt.Errorf("outside %s: mode changed to %v", outside, fi.Mode()))
	}
	entries, err := os.ReadDir(outside)
	if err != nil {
		return fmt.Errorf("outside: %w", err)
	}
	for _, e := range entries {
		if e.Name() != SecretName {
			errs = append(errs, fmt.Errorf("outside %s: escaped entry %s", outside, e.Name()))
		}
	}
	secret := filepath.Join(outside, SecretName)
	fi, err := os.Lstat(secret)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("secret: %w", err))...)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink != 1 {
		errs = append(errs, fmt.Errorf("secret %s: %d hard links", secret, st.Nlink))
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != secretMode {
		errs = append(errs, fmt.Errorf("secret %s: mode changed to %v", secret, fi.Mode()))
	}
	if data, err := os.ReadFile(secret); err != nil || string(data) != secretData {
		errs = append(errs, fmt.Errorf("secret %s: content changed to %q (%v)", secret, data, err))
	}
	return errors.Join(errs...)
}

// Image is [Busybox] with e on top, named docker.io/berth/evil-<name>:latest,
// for tests that go through import or pull and unpack.
func (e EvilLayer) Image(opts ...Option) (*Image, error) {
	o := applyOptions("docker.io/berth/evil-"+e.Name+":latest", opts)
	base, err := BusyboxLayer()
	if err != nil {
		return nil, err
	}
	return BuildImage(ImageSpec{
		Name:        o.name,
		Layers:      []Layer{base, e.Layer},
		Compression: o.compression,
		Config:      ocispec.ImageConfig{Env: []string{DefaultPath}, Cmd: []string{"sh"}},
	})
}
