package testimages

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchSpec describes a benchmark image for [GenerateBench]. Images that
// agree on Layers, Size, SharedLayers, BaseSeed and Busybox but differ in
// Seed share their first SharedLayers layers byte for byte.
type BenchSpec struct {
	Name         string // reference; default "docker.io/berth/bench:latest"
	Layers       int    // default 6
	Size         int64  // file bytes over all layers; default 300 MiB
	Seed         uint64 // content of the layers above the shared ones
	SharedLayers int    // leading layers generated from BaseSeed instead
	BaseSeed     uint64
	// Busybox puts [BusyboxLayer]'s files into the first layer so the image
	// runs (Cmd ["sh"]).
	Busybox bool
}

// BenchName is the default reference of [GenerateBench] images.
const BenchName = "docker.io/berth/bench:latest"

func (s *BenchSpec) defaults() error {
	if s.Name == "" {
		s.Name = BenchName
	}
	if s.Layers == 0 {
		s.Layers = 6
	}
	if s.Size == 0 {
		s.Size = 300 << 20
	}
	if s.Layers < 1 || s.Size < 0 || s.SharedLayers < 0 || s.SharedLayers > s.Layers {
		return fmt.Errorf("bench spec: %d layers, %d shared, size %d: %w", s.Layers, s.SharedLayers, s.Size, errdefs.ErrInvalidArgument)
	}
	return nil
}

// GenerateBench writes a gzip-compressed benchmark image into the OCI
// layout at dir, creating it or adding to it (index.json entries with other
// names stay), and returns the manifest descriptor. Layer i holds about
// Size*(Layers-i)/(1+2+...+Layers) bytes in many files of varied sizes
// (mostly small, a few of megabytes) mixing text, binary-like and random
// content, so it compresses like real images (to roughly 40-50%). Content is
// a pure function of the spec; layers are generated and compressed in
// parallel, streamed to disk.
func GenerateBench(dir string, spec BenchSpec) (ocispec.Descriptor, error) {
	if err := spec.defaults(); err != nil {
		return ocispec.Descriptor{}, err
	}
	blobDir := filepath.Join(dir, ocispec.ImageBlobsDir, digest.Canonical.String())
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("bench layout: %w", err)
	}
	layers, err := generateLayers(blobDir, spec)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	img := &Image{Name: spec.Name, Blobs: map[digest.Digest][]byte{}}
	manifest := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	config := ocispec.Image{
		Created:  &Epoch,
		Platform: platforms.DefaultSpec(),
		Config:   ocispec.ImageConfig{Env: []string{DefaultPath}, Cmd: []string{"sh"}},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	for i, l := range layers {
		manifest.Layers = append(manifest.Layers, l.desc)
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, l.diffID)
		config.History = append(config.History, ocispec.History{Created: &Epoch, CreatedBy: fmt.Sprintf("bench layer %d", i)})
	}
	if manifest.Config, err = img.addJSON(ocispec.MediaTypeImageConfig, config); err != nil {
		return ocispec.Descriptor{}, err
	}
	if img.Target, err = img.addJSON(ocispec.MediaTypeImageManifest, manifest); err != nil {
		return ocispec.Descriptor{}, err
	}
	img.Target.Platform = &config.Platform
	for d, data := range img.Blobs {
		if err := os.WriteFile(filepath.Join(blobDir, d.Encoded()), data, 0o644); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("bench layout: %w", err)
		}
	}
	if err := addToLayoutIndex(dir, img); err != nil {
		return ocispec.Descriptor{}, err
	}
	return img.Target, nil
}

// addToLayoutIndex writes oci-layout and puts img into dir's index.json,
// replacing an entry of the same name.
func addToLayoutIndex(dir string, img *Image) error {
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), layout, 0o644); err != nil {
		return fmt.Errorf("bench layout: %w", err)
	}
	indexPath := filepath.Join(dir, ocispec.ImageIndexFile)
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	if data, err := os.ReadFile(indexPath); err == nil {
		if err := json.Unmarshal(data, &index); err != nil {
			return fmt.Errorf("bench layout %s: %w", indexPath, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bench layout: %w", err)
	}
	kept := index.Manifests[:0]
	for _, m := range index.Manifests {
		if m.Annotations[AnnotationImageName] != img.Name {
			kept = append(kept, m)
		}
	}
	desc := img.Target
	desc.Annotations = nameAnnotations(img.Name)
	index.Manifests = append(kept, desc)
	data, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("bench layout index: %w", err)
	}
	return os.WriteFile(indexPath, data, 0o644)
}

type benchLayer struct {
	desc   ocispec.Descriptor
	diffID digest.Digest
}

// generateLayers builds the layers concurrently, one per CPU at a time.
func generateLayers(blobDir string, spec BenchSpec) ([]benchLayer, error) {
	layers := make([]benchLayer, spec.Layers)
	errs := make([]error, spec.Layers)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	weights := spec.Layers * (spec.Layers + 1) / 2
	for i := range spec.Layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			seed := spec.Seed
			if i < spec.SharedLayers {
				seed = spec.BaseSeed
			}
			size := spec.Size * int64(spec.Layers-i) / int64(weights)
			layers[i], errs[i] = writeBenchLayer(blobDir, i, seed, size, spec.Busybox && i == 0)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return layers, nil
}

// writeBenchLayer streams one layer to a temporary blob file, hashing the
// tar and the gzip stream on the way, then renames it to its digest.
func writeBenchLayer(blobDir string, index int, seed uint64, size int64, busybox bool) (benchLayer, error) {
	f, err := os.CreateTemp(blobDir, ".ingest-")
	if err != nil {
		return benchLayer{}, fmt.Errorf("bench layer %d: %w", index, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	blobHash, counter := digest.Canonical.Digester(), &countWriter{}
	out := bufio.NewWriterSize(io.MultiWriter(f, blobHash.Hash(), counter), 1<<20)
	zw, err := gzip.NewWriterLevel(out, gzip.DefaultCompression)
	if err != nil {
		f.Close()
		return benchLayer{}, err
	}
	diffHash := digest.Canonical.Digester()
	tw := tar.NewWriter(io.MultiWriter(zw, diffHash.Hash()))
	err = writeBenchTar(tw, index, seed, size, busybox)
	for _, step := range []func() error{tw.Close, zw.Close, out.Flush, f.Close} {
		err = errors.Join(err, step())
	}
	if err != nil {
		return benchLayer{}, fmt.Errorf("bench layer %d: %w", index, err)
	}
	d := blobHash.Digest()
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return benchLayer{}, fmt.Errorf("bench layer %d: %w", index, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(blobDir, d.Encoded())); err != nil {
		return benchLayer{}, fmt.Errorf("bench layer %d: %w", index, err)
	}
	return benchLayer{
		desc:   ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: counter.n},
		diffID: diffHash.Digest(),
	}, nil
}

func writeBenchTar(tw *tar.Writer, index int, seed uint64, size int64, busybox bool) error {
	if busybox {
		if err := copyBusybox(tw); err != nil {
			return err
		}
	}
	g := newContentGen(seed, index)
	root := fmt.Sprintf("opt/bench/l%d", index)
	for _, d := range []string{"opt", "opt/bench", root} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: Epoch}); err != nil {
			return err
		}
	}
	const filesPerDir = 64
	layerSize := size
	for n := 0; size > 0; n++ {
		if n%filesPerDir == 0 {
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("%s/d%03d/", root, n/filesPerDir), Mode: 0o755, ModTime: Epoch}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
		fsize := min(g.fileSize(layerSize), size)
		size -= fsize
		if err := g.writeFile(tw, fmt.Sprintf("%s/d%03d/f%05d", root, n/filesPerDir, n), fsize); err != nil {
			return err
		}
	}
	return nil
}

// copyBusybox writes the entries of the busybox base layer into tw.
func copyBusybox(tw *tar.Writer) error {
	l, err := BusyboxLayer()
	if err != nil {
		return err
	}
	tr := tar.NewReader(bytes.NewReader(l.Tar))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// contentGen produces file sizes and contents from a ChaCha8 stream keyed
// by (seed, layer), so output never depends on scheduling.
type contentGen struct {
	rng  *rand.Rand
	src  *rand.ChaCha8
	text []byte // word salad that chunks of text are cut from
	buf  []byte
}

func newContentGen(seed uint64, layer int) *contentGen {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:8], seed)
	binary.LittleEndian.PutUint64(key[8:16], uint64(layer))
	copy(key[16:], "berth-testimages")
	src := rand.NewChaCha8(key)
	g := &contentGen{rng: rand.New(src), src: src, buf: make([]byte, 64<<10)}
	g.text = g.wordSalad(1 << 20)
	return g
}

// wordSalad makes n bytes of lines of pseudo-words from a vocabulary of a
// few thousand: text that compresses about as well as source or docs.
func (g *contentGen) wordSalad(n int) []byte {
	const letters = "etaoinshrdlcumwfgypbvkjxqz_"
	vocab := make([]string, 3000)
	for i := range vocab {
		w := make([]byte, 2+g.rng.IntN(9))
		for j := range w {
			w[j] = letters[min(g.rng.IntN(len(letters)), g.rng.IntN(len(letters)))] // skewed to frequent letters
		}
		vocab[i] = string(w)
	}
	out := make([]byte, 0, n+64)
	for col := 0; len(out) < n; {
		w := vocab[min(g.rng.IntN(len(vocab)), g.rng.IntN(len(vocab)))] // skewed to frequent words
		out = append(out, w...)
		col += len(w) + 1
		if col > 60+g.rng.IntN(30) {
			out, col = append(out, '\n'), 0
		} else if g.rng.IntN(8) == 0 {
			out = append(out, ",.:;(){}="[g.rng.IntN(9)])
		} else {
			out = append(out, ' ')
		}
	}
	return out[:n]
}

// fileSize is mostly small files (64 B - 64 KiB) and some large ones
// (64 KiB - 8 MiB, at most a sixteenth of the layer so that every layer
// has many files), log-uniform within each class.
func (g *contentGen) fileSize(layerSize int64) int64 {
	lo, hi := 64.0, 64.0*1024
	if g.rng.IntN(100) < 5 {
		lo, hi = 64.0*1024, max(128.0*1024, min(8.0*1024*1024, float64(layerSize)/16))
	}
	return int64(lo * math.Pow(hi/lo, g.rng.Float64()))
}

// File kinds, chosen per file.
const (
	kindText   = iota // source, docs, configs
	kindBinary        // executables and libraries: mixed segments
	kindRandom        // already compressed data
)

func (g *contentGen) writeFile(tw *tar.Writer, name string, size int64) error {
	kind, mode := kindText, int64(0o644)
	switch r := g.rng.IntN(100); {
	case r < 35:
		kind, mode = kindBinary, 0o755
	case r < 45:
		kind = kindRandom
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size, ModTime: Epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	for size > 0 {
		chunk := g.buf[:min(int64(len(g.buf)), size)]
		g.fill(chunk, kind)
		if _, err := tw.Write(chunk); err != nil {
			return err
		}
		size -= int64(len(chunk))
	}
	return nil
}

// fill fills p with content of kind, in segments of up to 4 KiB.
func (g *contentGen) fill(p []byte, kind int) {
	for len(p) > 0 {
		seg := p[:min(len(p), 256+g.rng.IntN(3840))]
		p = p[len(seg):]
		k := kind
		if kind == kindBinary {
			// Code-like random bytes, zero padding and string tables.
			k = []int{kindRandom, kindRandom, -1, -1, -1, -1, kindText, kindText, kindText, kindText}[g.rng.IntN(10)]
		}
		switch k {
		case kindRandom:
			_, _ = g.src.Read(seg)
		case kindText:
			off := g.rng.IntN(len(g.text) - len(seg))
			copy(seg, g.text[off:])
		default:
			clear(seg)
		}
	}
}

// WriteLayoutArchive streams the OCI layout at dir (e.g. written by
// [GenerateBench]) as a tar archive with fixed metadata, in name order.
func WriteLayoutArchive(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: filepath.ToSlash(rel) + "/", Mode: 0o755, ModTime: Epoch})
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("layout entry %s is not a regular file: %w", rel, errdefs.ErrInvalidArgument)
		}
		return copyFileToTar(tw, p, filepath.ToSlash(rel))
	})
	if err != nil {
		return fmt.Errorf("archive layout %s: %w", dir, err)
	}
	return tw.Close()
}

func copyFileToTar(tw *tar.Writer, p, name string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: fi.Size(), ModTime: Epoch}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}
