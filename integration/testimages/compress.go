package testimages

import (
	"bytes"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression is how layer blobs are stored.
type Compression string

// The supported layer compressions; the zero value means Gzip.
const (
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
	Uncompressed Compression = "none"
)

// MediaType is the OCI layer media type for c.
func (c Compression) MediaType() (string, error) {
	switch c {
	case Gzip, "":
		return ocispec.MediaTypeImageLayerGzip, nil
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd, nil
	case Uncompressed:
		return ocispec.MediaTypeImageLayer, nil
	}
	return "", fmt.Errorf("compression %q: %w", c, errdefs.ErrInvalidArgument)
}

// Compress returns the blob of l compressed with c and its descriptor.
func (l Layer) Compress(c Compression) (ocispec.Descriptor, []byte, error) {
	mediaType, err := c.MediaType()
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	var buf bytes.Buffer
	w, err := compressor(&buf, c)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if _, err := w.Write(l.Tar); err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("compress layer %s: %w", l.DiffID, err)
	}
	if err := w.Close(); err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("compress layer %s: %w", l.DiffID, err)
	}
	data := buf.Bytes()
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// compressor wraps w. Both encoders are deterministic for a given library
// version: gzip writes no name or mtime, zstd runs single-threaded.
func compressor(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Gzip, "":
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	case Uncompressed:
		return nopWriteCloser{w}, nil
	}
	return nil, fmt.Errorf("compression %q: %w", c, errdefs.ErrInvalidArgument)
}

// Decompress returns the uncompressed tarball of a layer blob, detecting gzip
// and zstd by their magic bytes (media types lie in Docker archives).
func Decompress(blob []byte) ([]byte, error) {
	r, err := decompressor(bytes.NewReader(blob))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("decompress layer: %w", err)
	}
	return data, nil
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompressor detects the compression of r from its first bytes.
func decompressor(r io.Reader) (io.ReadCloser, error) {
	head := make([]byte, 4)
	n, err := io.ReadFull(r, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("read layer header: %w", err)
	}
	head = head[:n]
	r = io.MultiReader(bytes.NewReader(head), r)
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("open gzip layer: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("open zstd layer: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}
