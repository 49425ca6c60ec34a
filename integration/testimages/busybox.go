package testimages

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BusyboxPath is the static busybox every image is built from.
const BusyboxPath = "/usr/bin/busybox"

// Contents of the busybox base layer that tests check against.
const (
	// DefaultPath is the PATH of every ready-made image.
	DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// IndexHTML is /www/index.html, for httpd tests.
	IndexHTML = "<html><body><h1>berth test page</h1></body></html>\n"
	// Passwd is /etc/passwd.
	Passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" +
		"berth:x:1000:1000:berth:/home/berth:/bin/sh\n"
	// Group is /etc/group.
	Group = "root:x:0:\nnobody:x:65534:\nberth:x:1000:\n"
	// BerthUID and BerthGID own /home/berth.
	BerthUID, BerthGID = 1000, 1000
)

// Default references of the ready-made images.
const (
	BusyboxName       = "docker.io/library/busybox:latest"
	MultiLayerName    = "docker.io/berth/multilayer:latest"
	MultiPlatformName = "docker.io/berth/multiplatform:latest"
	SymlinkDataName   = "docker.io/berth/symlink-data:latest"
)

// Option adjusts a ready-made image.
type Option func(*options)

type options struct {
	name        string
	compression Compression
}

// WithName records the image under name instead of its default reference.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithCompression stores the layers with c instead of gzip.
func WithCompression(c Compression) Option { return func(o *options) { o.compression = c } }

func applyOptions(name string, opts []Option) options {
	o := options{name: name, compression: Gzip}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

var busyboxLayer = sync.OnceValues(buildBusyboxLayer)

// BusyboxLayer is the base layer of [Busybox]: /bin/busybox with a symlink
// per applet in /bin, /etc/passwd ([Passwd]), /etc/group ([Group]), /tmp
// (1777), /root (0700), /home/berth (owned by 1000:1000), /www/index.html
// ([IndexHTML]) and empty /dev, /proc, /sys. The error wraps
// errdefs.ErrNotFound when busybox is not installed.
func BusyboxLayer() (Layer, error) {
	return busyboxLayer()
}

func buildBusyboxLayer() (Layer, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return Layer{}, fmt.Errorf("read busybox (install busybox-static): %w", errdefs.ErrNotFound)
	}
	applets, err := busyboxApplets()
	if err != nil {
		return Layer{}, err
	}
	entries := []Entry{
		Dir("bin", 0o755),
		File("bin/busybox", bin, 0o755),
		Dir("dev", 0o755),
		Dir("proc", 0o555),
		Dir("sys", 0o555),
		Dir("etc", 0o755),
		File("etc/passwd", []byte(Passwd), 0o644),
		File("etc/group", []byte(Group), 0o644),
		Dir("tmp", 0o1777),
		Dir("root", 0o700),
		Dir("home", 0o755),
		Dir("home/berth", 0o755).Owner(BerthUID, BerthGID),
		Dir("www", 0o755),
		File("www/index.html", []byte(IndexHTML), 0o644),
	}
	for _, a := range applets {
		entries = append(entries, Symlink("bin/"+a, "busybox"))
	}
	return NewLayer(entries...)
}

// busyboxApplets asks the binary which applets it has, so the image follows
// whatever busybox-static Debian ships.
func busyboxApplets() ([]string, error) {
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		a := strings.TrimSpace(sc.Text())
		if a == "" || a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		applets = append(applets, a)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("busybox --list printed no applets: %w", errdefs.ErrFailedPrecondition)
	}
	return applets, nil
}

// Busybox is a single-layer image of [BusyboxLayer] for the host platform,
// named [BusyboxName], with Cmd ["sh"] and Env [DefaultPath].
func Busybox(opts ...Option) (*Image, error) {
	o := applyOptions(BusyboxName, opts)
	base, err := BusyboxLayer()
	if err != nil {
		return nil, err
	}
	return BuildImage(ImageSpec{
		Name:        o.name,
		Layers:      []Layer{base},
		Compression: o.compression,
		Config:      ocispec.ImageConfig{Env: []string{DefaultPath}, Cmd: []string{"sh"}},
		History:     []ocispec.History{{Created: &Epoch, CreatedBy: "busybox-static " + BusyboxPath}},
	})
}

// PlatformMarker is the file that carries the platform in the images of
// [MultiPlatform] built for a platform other than the host's.
const PlatformMarker = "PLATFORM"

// MultiPlatform is an index named [MultiPlatformName] with manifests for
// linux/amd64, linux/arm64 and linux/arm/v7 (in that order). The host's
// platform gets the runnable [Busybox] image; the others get one layer
// holding only /PLATFORM with the platform string ("linux/arm/v7") and
// /etc/passwd, and a config that names their os, architecture and variant.
func MultiPlatform(opts ...Option) (*Image, error) {
	o := applyOptions(MultiPlatformName, opts)
	host := platforms.NewMatcher(platforms.DefaultSpec())
	var manifests []*Image
	for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		spec := platforms.MustParse(p)
		var img *Image
		var err error
		if host.Match(spec) {
			img, err = Busybox(WithCompression(o.compression))
		} else {
			img, err = markerImage(spec, p, o.compression)
		}
		if err != nil {
			return nil, fmt.Errorf("platform %s: %w", p, err)
		}
		manifests = append(manifests, img)
	}
	return BuildIndex(o.name, manifests, nil)
}

func markerImage(spec ocispec.Platform, name string, c Compression) (*Image, error) {
	l, err := NewLayer(
		File(PlatformMarker, []byte(name+"\n"), 0o644),
		File("etc/passwd", []byte(Passwd), 0o644),
	)
	if err != nil {
		return nil, err
	}
	return BuildImage(ImageSpec{
		Layers:      []Layer{l},
		Compression: c,
		Platform:    spec,
		Config:      ocispec.ImageConfig{Env: []string{DefaultPath}, Cmd: []string{"sh"}},
	})
}

// BusyboxExpected is the filesystem of [Busybox]: its files and
// directories, and a sample of the applet links.
func BusyboxExpected() Expectation {
	home := dir(0o755)
	home.UID, home.GID = BerthUID, BerthGID
	return Expectation{Present: map[string]FSEntry{
		"bin/busybox":    {Type: tar.TypeReg, Mode: 0o755, AnyData: true},
		"bin/sh":         link("busybox"),
		"bin/ls":         link("busybox"),
		"bin/httpd":      link("busybox"),
		"etc/passwd":     reg(Passwd, 0o644),
		"etc/group":      reg(Group, 0o644),
		"tmp":            dir(0o1777),
		"root":           dir(0o700),
		"home/berth":     home,
		"www/index.html": reg(IndexHTML, 0o644),
		"dev":            dir(0o755),
		"proc":           dir(0o555),
		"sys":            dir(0o555),
	}}
}
