// Package compression detects, decompresses and compresses layer streams
// (gzip, zstd or none) and maps them to and from OCI and Docker layer media
// types.
package compression

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression is the algorithm a layer stream is compressed with.
type Compression int

const (
	// Uncompressed is a plain tar stream.
	Uncompressed Compression = iota
	// Gzip is RFC 1952 gzip.
	Gzip
	// Zstd is RFC 8878 Zstandard.
	Zstd
)

// String returns the name used in media type suffixes ("gzip", "zstd") or
// "uncompressed".
func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "uncompressed"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", int(c))
}

// Extension returns the usual file name suffix (".gz", ".zst", or "").
func (c Compression) Extension() string {
	switch c {
	case Gzip:
		return ".gz"
	case Zstd:
		return ".zst"
	}
	return ""
}

var (
	gzipMagic = []byte{0x1f, 0x8b, 0x08}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// peekSize is how many bytes detection looks at; the longest magic is four.
const peekSize = 4

// readerSize is the buffer put in front of the source for detection. It is
// large so that the decompressor reads the source in big chunks too.
const readerSize = 128 << 10

// Detect reports the compression of a stream starting with b. Fewer than four
// bytes (an empty or tiny stream) is reported as Uncompressed.
func Detect(b []byte) Compression {
	switch {
	case bytes.HasPrefix(b, gzipMagic):
		return Gzip
	case bytes.HasPrefix(b, zstdMagic):
		return Zstd
	case isZstdSkippable(b):
		return Zstd
	}
	return Uncompressed
}

// isZstdSkippable matches a zstd skippable frame (magic 0x184D2A5?, little
// endian), which may precede the first data frame.
func isZstdSkippable(b []byte) bool {
	return len(b) >= 4 && b[0]&0xf0 == 0x50 && b[1] == 0x2a && b[2] == 0x4d && b[3] == 0x18
}

// DecompressStream detects the compression of r by its magic bytes and returns
// a reader of the decompressed data. Close releases the decompressor (and
// waits for a helper process if one is used); it does not close r.
func DecompressStream(r io.Reader) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, readerSize)
	head, err := br.Peek(peekSize)
	if err != nil && err != io.EOF {
		return nil, Uncompressed, fmt.Errorf("read stream header: %w", err)
	}
	c := Detect(head)
	rc, err := Decompress(br, c)
	if err != nil {
		return nil, c, err
	}
	return rc, c, nil
}

// Decompress returns a reader of r decompressed with c, for callers that know
// the compression from a media type.
func Decompress(r io.Reader, c Compression) (io.ReadCloser, error) {
	switch c {
	case Uncompressed:
		return io.NopCloser(r), nil
	case Gzip:
		return newGzipReader(r)
	case Zstd:
		return newZstdReader(r)
	}
	return nil, fmt.Errorf("decompress %v: %w", c, errdefs.ErrNotImplemented)
}

func newZstdReader(r io.Reader) (io.ReadCloser, error) {
	// Concurrency 0 lets the decoder decode blocks ahead in the background
	// (up to GOMAXPROCS), which overlaps decoding with tar extraction.
	d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(0), zstd.WithDecoderLowmem(false))
	if err != nil {
		return nil, fmt.Errorf("open zstd stream: %w", err)
	}
	return zstdReadCloser{d}, nil
}

type zstdReadCloser struct{ d *zstd.Decoder }

func (z zstdReadCloser) Read(p []byte) (int, error) { return z.d.Read(p) }

// Close stops the decoder's goroutines; it never fails.
func (z zstdReadCloser) Close() error {
	z.d.Close()
	return nil
}

// CompressStream returns a writer that compresses into w with c. Close
// flushes the compressed trailer; it does not close w.
func CompressStream(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Uncompressed:
		return nopWriteCloser{w}, nil
	case Gzip:
		// klauspost's gzip writer is several times faster than the standard
		// library's at the default level, with the same output format.
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case Zstd:
		e, err := zstd.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("open zstd writer: %w", err)
		}
		return e, nil
	}
	return nil, fmt.Errorf("compress %v: %w", c, errdefs.ErrNotImplemented)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
