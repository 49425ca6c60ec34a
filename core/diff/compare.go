package diff

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/archive"
	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/mount"
)

// diffMediaTypes are the layer types Compare writes: OCI's three, as
// containerd's walking differ, and Docker's equivalents.
var diffMediaTypes = map[string]compression.Compression{
	compression.MediaTypeOCILayer:        compression.Uncompressed,
	compression.MediaTypeOCILayerGzip:    compression.Gzip,
	compression.MediaTypeOCILayerZstd:    compression.Zstd,
	compression.MediaTypeDockerLayer:     compression.Uncompressed,
	compression.MediaTypeDockerLayerGzip: compression.Gzip,
	compression.MediaTypeDockerLayerZstd: compression.Zstd,
}

// writeBufSize batches the tar writer's many small writes (512-byte
// headers) into large ones for the compressor and the hash.
const writeBufSize = 256 << 10

// Compare implements Comparer.
//
// When upper is a writable overlay whose lower layers are exactly what
// lower shows, its upper directory is the diff and only it is walked
// (core/archive.WriteOverlayDiff); if that directory uses redirect_dir or
// metacopy the full comparison runs instead. Otherwise both sides are
// compared as trees (core/archive.WriteDiff): bind mounts through their
// source directories, anything else mounted read-only on temporary
// directories. The blob is committed with containerd.io/uncompressed set
// to the uncompressed digest.
func (d *Differ) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...Opt) (ocispec.Descriptor, error) {
	var cfg Config
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("diff: %w", err)
		}
	}
	if cfg.MediaType == "" {
		cfg.MediaType = ocispec.MediaTypeImageLayerGzip
	}
	comp, ok := diffMediaTypes[cfg.MediaType]
	if !ok {
		return ocispec.Descriptor{}, fmt.Errorf("diff media type %q: not a layer type berth writes (use %s, %s or %s): %w",
			cfg.MediaType, ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, errdefs.ErrNotImplemented)
	}
	if len(upper) == 0 {
		return ocispec.Descriptor{}, fmt.Errorf("diff: upper mounts are required: %w", errdefs.ErrInvalidArgument)
	}
	w := &layerWriter{d: d, cfg: cfg, comp: comp}
	if err := w.open(ctx); err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, err := w.write(ctx, lower, upper)
	if err != nil {
		w.abort(ctx)
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// layerWriter writes one diff into a content ingest.
type layerWriter struct {
	d       *Differ
	cfg     Config
	comp    compression.Compression
	cw      content.Writer
	ownsRef bool
}

func (w *layerWriter) open(ctx context.Context) error {
	if w.cfg.Reference == "" {
		w.cfg.Reference = uniqueRef()
		w.ownsRef = true
	}
	cw, err := w.d.store.Writer(ctx, content.WithRef(w.cfg.Reference),
		content.WithDescriptor(ocispec.Descriptor{MediaType: w.cfg.MediaType}))
	if err != nil {
		return fmt.Errorf("diff: open content writer %q: %w", w.cfg.Reference, err)
	}
	w.cw = cw
	if !w.ownsRef {
		// A named ingest may hold an earlier attempt's bytes.
		if err := cw.Truncate(0); err != nil {
			cw.Close()
			return fmt.Errorf("diff: reset content writer %q: %w", w.cfg.Reference, err)
		}
	}
	return nil
}

// abort drops the ingest after a failure. Ingests named by the caller
// stay (containerd's behaviour: the caller owns them); ours are removed.
func (w *layerWriter) abort(ctx context.Context) {
	if w.cw == nil {
		return
	}
	w.cw.Close()
	w.cw = nil
	if w.ownsRef {
		if err := w.d.store.Abort(context.WithoutCancel(ctx), w.cfg.Reference); err != nil && !errdefs.IsNotFound(err) {
			w.d.logger.Warn("remove diff ingest", "ref", w.cfg.Reference, "error", err)
		}
	}
}

// write produces the tar, trying the overlay upper directory first when
// it is the diff, and commits it.
func (w *layerWriter) write(ctx context.Context, lower, upper []mount.Mount) (ocispec.Descriptor, error) {
	var (
		diffID digest.Digest
		err    error
	)
	if dir, ok := overlayUpper(lower, upper); ok {
		diffID, err = w.stream(ctx, func(tw io.Writer) error {
			return archive.WriteOverlayDiff(ctx, tw, dir, archive.WithDiffLogger(w.d.logger))
		})
		if isNotImplemented(err) {
			w.d.logger.DebugContext(ctx, "overlay upper directory cannot be read alone; comparing trees", "upperdir", dir, "reason", err)
			if terr := w.cw.Truncate(0); terr != nil {
				return ocispec.Descriptor{}, fmt.Errorf("diff: restart content writer: %w", terr)
			}
			diffID, err = w.compareTrees(ctx, lower, upper)
		}
	} else {
		diffID, err = w.compareTrees(ctx, lower, upper)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("diff: %w", err)
	}
	return w.commit(ctx, diffID)
}

// compareTrees writes the diff of the two trees, mounting (read-only) the
// sides that are not plain bind mounts.
func (w *layerWriter) compareTrees(ctx context.Context, lower, upper []mount.Mount) (digest.Digest, error) {
	var diffID digest.Digest
	err := withDir(lower, func(lowerDir string) error {
		return withDir(upper, func(upperDir string) error {
			var err error
			diffID, err = w.stream(ctx, func(tw io.Writer) error {
				return archive.WriteDiff(ctx, tw, lowerDir, upperDir, archive.WithDiffLogger(w.d.logger))
			})
			return err
		})
	})
	return diffID, err
}

// withDir calls f with a directory showing mounts: "" for none, a bind
// mount's source, or a read-only temporary mount.
func withDir(mounts []mount.Mount, f func(dir string) error) error {
	if len(mounts) == 0 {
		return f("")
	}
	if src, ok := bindSource(mounts); ok {
		return f(src)
	}
	return mount.WithTempMount(readOnly(mounts), f)
}

// stream runs gen with a writer feeding the compressor into the ingest and
// returns the digest of the uncompressed tar.
func (w *layerWriter) stream(ctx context.Context, gen func(io.Writer) error) (digest.Digest, error) {
	zw, err := compression.CompressStream(w.cw, w.comp)
	if err != nil {
		return "", err
	}
	h := digest.Canonical.Hash()
	bw := bufio.NewWriterSize(io.MultiWriter(zw, h), writeBufSize)
	tw := io.Writer(bw)
	var clamp *epochWriter
	if w.cfg.SourceDateEpoch != nil {
		clamp = newEpochWriter(bw, *w.cfg.SourceDateEpoch)
		tw = clamp
	}
	err = gen(tw)
	if clamp != nil {
		err = errors.Join(err, clamp.Close())
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := zw.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("finish %v stream: %w", w.comp, cerr)
	}
	if err != nil {
		return "", err
	}
	return digest.NewDigest(digest.Canonical, h), nil
}

// commit commits the ingest with the caller's labels and the
// uncompressed digest, and makes sure a blob that already existed carries
// that label too.
func (w *layerWriter) commit(ctx context.Context, diffID digest.Digest) (ocispec.Descriptor, error) {
	labels := maps.Clone(w.cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelUncompressed] = diffID.String()
	dgst := w.cw.Digest()
	err := w.cw.Commit(ctx, 0, dgst, content.WithLabels(labels))
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispec.Descriptor{}, fmt.Errorf("diff: commit layer %s: %w", dgst, err)
	}
	w.cw.Close()
	w.cw = nil
	info, err := w.d.store.Info(ctx, dgst)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("diff: layer %s after commit: %w", dgst, err)
	}
	if info.Labels[LabelUncompressed] == "" {
		info.Labels = map[string]string{LabelUncompressed: diffID.String()}
		if _, err := w.d.store.Update(ctx, info, "labels."+LabelUncompressed); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("diff: label layer %s with its uncompressed digest: %w", dgst, err)
		}
	}
	return ocispec.Descriptor{MediaType: w.cfg.MediaType, Digest: dgst, Size: info.Size}, nil
}

// uniqueRef names an ingest nobody else uses.
func uniqueRef() string {
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("diff-%d-%s", time.Now().UnixNano(), base64.RawURLEncoding.EncodeToString(b[:]))
}
