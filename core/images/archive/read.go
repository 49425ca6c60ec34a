package archive

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/images"
)

// Names of the files an archive describes itself with.
const (
	dockerManifestFile = "manifest.json"
	repositoriesFile   = "repositories"
)

// metadataFiles are read into memory (bounded) instead of the store.
var metadataFiles = map[string]bool{
	ocispec.ImageLayoutFile: true,
	ocispec.ImageIndexFile:  true,
	dockerManifestFile:      true,
	repositoriesFile:        true,
}

// maxEntries bounds the entries of one archive, so a crafted archive of
// countless tiny files cannot grow the import's tables without end. Real
// archives have a few files per layer.
const maxEntries = 1 << 17

// files is what reading an archive leaves: its metadata files in memory,
// every other regular file as a blob in the store, and its links.
type files struct {
	meta  map[string][]byte
	blobs map[string]ocispec.Descriptor // clean entry name → blob
	links map[string]string             // clean entry name → clean target name
}

// reader streams one archive into a content store.
type reader struct {
	cs       content.Store
	refs     *refGen
	progress *progressCounter
	files    files
}

// readArchive reads the tar (optionally gzip or zstd compressed) from r,
// writing each blob as it comes: blobs/<alg>/<hex> verified against its
// name, any other file (Docker configs and layer tars) under the digest of
// its bytes. The order of entries does not matter.
func readArchive(ctx context.Context, cs content.Store, refs *refGen, r io.Reader, progress func(Progress)) (*files, error) {
	pc := &progressCounter{r: r, fn: progress}
	src, _, err := compression.DecompressStream(pc)
	if err != nil {
		return nil, readError("open archive", err)
	}
	defer src.Close()
	tail := &tailReader{r: src}
	rd := &reader{cs: cs, refs: refs, progress: pc, files: files{
		meta:  map[string][]byte{},
		blobs: map[string]ocispec.Descriptor{},
		links: map[string]string{},
	}}
	tr := tar.NewReader(tail)
	for n := 0; ; n++ {
		if n == maxEntries {
			return nil, badArchive("it has more than %d entries", maxEntries)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return &rd.files, tail.checkEnd()
		}
		if err != nil {
			return nil, readError("read archive", err)
		}
		if err := rd.entry(ctx, hdr, tr); err != nil {
			return nil, err
		}
	}
}

func (rd *reader) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	name, err := entryName(hdr.Name)
	if err != nil {
		return badArchive("%v", err)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return nil
	case tar.TypeSymlink:
		// `docker save` links a layer shared by two images to the first copy.
		if path.IsAbs(hdr.Linkname) {
			return badArchive("symlink %s points to absolute path %q", name, hdr.Linkname)
		}
		target, err := entryName(path.Join(path.Dir(name), hdr.Linkname))
		if err != nil {
			return badArchive("symlink %s points outside the archive (%q)", name, hdr.Linkname)
		}
		rd.files.links[name] = target
		return nil
	case tar.TypeLink:
		target, err := entryName(hdr.Linkname)
		if err != nil {
			return badArchive("hard link %s: %v", name, err)
		}
		rd.files.links[name] = target
		return nil
	case tar.TypeReg:
		err := rd.regular(ctx, name, hdr.Size, r)
		rd.progress.report()
		return err
	}
	slog.DebugContext(ctx, "image import: ignoring archive entry", "name", name, "type", string(hdr.Typeflag))
	return nil
}

// entryName cleans an entry name and refuses absolute names and names
// with ".." components: nothing in an image archive needs them.
func entryName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry %q has an absolute name", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q has a \"..\" component", name)
		}
	}
	clean := path.Clean(name)
	if !fs.ValidPath(clean) {
		return "", fmt.Errorf("entry %q has an invalid name", name)
	}
	return clean, nil
}

func (rd *reader) regular(ctx context.Context, name string, size int64, r io.Reader) error {
	if metadataFiles[name] {
		data, err := readSmall(name, size, r)
		if err != nil {
			return err
		}
		rd.files.meta[name] = data
		return nil
	}
	if isLegacyMetadata(name) {
		return nil
	}
	if dir, rest, ok := strings.Cut(name, "/"); ok && dir == ocispec.ImageBlobsDir {
		d, err := digest.Parse(strings.Replace(rest, "/", ":", 1))
		if err != nil {
			// Nothing can refer to it by digest, so it cannot matter.
			slog.DebugContext(ctx, "image import: ignoring blob with an invalid name", "name", name)
			return nil
		}
		desc := ocispec.Descriptor{Digest: d, Size: size}
		if err := rd.writeKnown(ctx, name, desc, r); err != nil {
			return err
		}
		rd.files.blobs[name] = desc
		return nil
	}
	desc, err := rd.writeUnknown(ctx, name, size, r)
	if err != nil {
		return err
	}
	rd.files.blobs[name] = desc
	return nil
}

// isLegacyMetadata matches the per-layer "json" and "VERSION" files of the
// classic `docker save` format, which the manifest.json format supersedes.
func isLegacyMetadata(name string) bool {
	dir, base := path.Split(name)
	return dir != "" && strings.Count(name, "/") == 1 && (base == "json" || base == "VERSION")
}

func readSmall(name string, size int64, r io.Reader) ([]byte, error) {
	if size > images.MaxManifestSize {
		return nil, badArchive("%s is %d bytes, over the limit of %d", name, size, images.MaxManifestSize)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, readError("read "+name, err)
	}
	return data, nil
}

// writeKnown writes a blob whose digest the archive names, verifying it.
func (rd *reader) writeKnown(ctx context.Context, name string, desc ocispec.Descriptor, r io.Reader) error {
	ref := rd.refs.next()
	src := &sourceReader{r: r}
	err := content.WriteBlob(ctx, rd.cs, ref, src, desc)
	if err == nil {
		rd.progress.blobs++
		return nil
	}
	rd.abort(ctx, ref)
	switch {
	case src.err != nil:
		return readError("read "+name, src.err)
	case errdefs.IsFailedPrecondition(err):
		return badArchive("%s does not match its digest %s", name, desc.Digest)
	}
	return fmt.Errorf("store %s: %w", name, err)
}

// writeUnknown writes a file that is not named by its digest and returns
// the descriptor of what was stored.
func (rd *reader) writeUnknown(ctx context.Context, name string, size int64, r io.Reader) (ocispec.Descriptor, error) {
	ref := rd.refs.next()
	desc, err := rd.writeHashed(ctx, ref, size, r)
	if err != nil {
		rd.abort(ctx, ref)
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", name, err)
	}
	rd.progress.blobs++
	return desc, nil
}

func (rd *reader) writeHashed(ctx context.Context, ref string, size int64, r io.Reader) (ocispec.Descriptor, error) {
	w, err := content.OpenWriter(ctx, rd.cs, content.WithRef(ref), content.WithDescriptor(ocispec.Descriptor{Size: size}))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("open ingest: %w", err)
	}
	defer w.Close()
	src := &sourceReader{r: r}
	n, err := copyContext(ctx, w, io.LimitReader(src, size))
	if src.err != nil {
		return ocispec.Descriptor{}, readError("read", src.err)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("write ingest: %w", err)
	}
	if n != size {
		return ocispec.Descriptor{}, badArchive("archive is truncated")
	}
	desc := ocispec.Descriptor{Digest: w.Digest(), Size: size}
	if err := w.Commit(ctx, size, desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispec.Descriptor{}, fmt.Errorf("commit: %w", err)
	}
	return desc, nil
}

// abort drops a failed ingest so no partial data stays behind.
func (rd *reader) abort(ctx context.Context, ref string) {
	if err := rd.cs.Abort(context.WithoutCancel(ctx), ref); err != nil && !errdefs.IsNotFound(err) {
		slog.WarnContext(ctx, "image import: abort ingest", "ref", ref, "error", err)
	}
}

var copyBufPool = sync.Pool{New: func() any {
	b := make([]byte, 1<<20)
	return &b
}}

// copyContext copies with a pooled 1 MiB buffer, stopping when ctx ends.
func copyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, rerr := io.ReadFull(r, *bp)
		if nr > 0 {
			nw, werr := w.Write((*bp)[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// sourceReader remembers a read error, so a failure of the archive stream
// is told apart from a failure of the store.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// tailReader keeps the last block of the tar stream. A tar ends with zero
// blocks; without them the stream was cut at an entry boundary, which the
// tar reader alone reports as a normal end.
type tailReader struct {
	r    io.Reader
	tail [512]byte
	n    int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	b := p[:n]
	if len(b) >= len(t.tail) {
		copy(t.tail[:], b[len(b)-len(t.tail):])
	} else if len(b) > 0 {
		copy(t.tail[:], t.tail[len(b):])
		copy(t.tail[len(t.tail)-len(b):], b)
	}
	t.n += int64(n)
	return n, err
}

func (t *tailReader) checkEnd() error {
	if t.n == 0 {
		return badArchive("archive is empty")
	}
	for _, c := range t.tail {
		if c != 0 {
			return badArchive("archive is truncated: it ends without the end-of-archive marker")
		}
	}
	return nil
}

// progressCounter counts the bytes read from the caller's stream and
// reports progress after each entry and every progressStep bytes.
type progressCounter struct {
	r      io.Reader
	fn     func(Progress)
	bytes  int64
	blobs  int
	marker int64
}

const progressStep = 8 << 20

func (p *progressCounter) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.bytes += int64(n)
	if p.fn != nil && p.bytes-p.marker >= progressStep {
		p.report()
	}
	return n, err
}

func (p *progressCounter) report() {
	if p.fn != nil {
		p.marker = p.bytes
		p.fn(Progress{Bytes: p.bytes, Blobs: p.blobs})
	}
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
