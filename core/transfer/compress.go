package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/diff"
	"github.com/berthd/berth/core/images"
)

// LabelCompressedGzip, on an uncompressed layer blob, names the blob of
// the same layer compressed with gzip, made when the layer was first
// pushed. Being a containerd.io/gc.ref.content label, it also keeps that
// blob as long as the layer is kept, so later pushes send it as it is.
// The compressed blob carries containerd.io/uncompressed pointing back.
const LabelCompressedGzip = "containerd.io/gc.ref.content.compressed.gzip"

// maxTreeDepth bounds index nesting, as pulls do.
const maxTreeDepth = 4

// compressTree returns desc unchanged when every layer under it is
// compressed; otherwise the descriptor of a new manifest (or index) that
// names gzip-compressed layers instead, stored with its garbage-collection
// labels. Every manifest under desc is announced to the tracker.
func (e *Engine) compressTree(ctx context.Context, desc ocispec.Descriptor, tr *tracker, depth int) (ocispec.Descriptor, error) {
	switch {
	case images.IsIndexType(desc.MediaType):
		if depth >= maxTreeDepth {
			return desc, fmt.Errorf("index %s: nested more than %d deep: %w", desc.Digest, maxTreeDepth, errdefs.ErrInvalidArgument)
		}
		return e.compressIndex(ctx, desc, tr, depth)
	case images.IsManifestType(desc.MediaType):
		return e.compressManifest(ctx, desc, tr)
	}
	return desc, nil
}

func (e *Engine) compressIndex(ctx context.Context, desc ocispec.Descriptor, tr *tracker, depth int) (ocispec.Descriptor, error) {
	idx, err := images.ReadIndex(ctx, e.cfg.Content, desc)
	if err != nil {
		return desc, err
	}
	tr.children(desc, idx.Manifests)
	changed := false
	for i, c := range idx.Manifests {
		nc, err := e.compressTree(ctx, c, tr, depth+1)
		if err != nil {
			return desc, err
		}
		if nc.Digest != c.Digest {
			idx.Manifests[i], changed = nc, true
		}
	}
	if !changed {
		return desc, nil
	}
	return e.storeJSON(ctx, desc, idx, idx.Manifests)
}

func (e *Engine) compressManifest(ctx context.Context, desc ocispec.Descriptor, tr *tracker) (ocispec.Descriptor, error) {
	m, err := images.ReadManifest(ctx, e.cfg.Content, desc)
	if err != nil {
		return desc, err
	}
	tr.children(desc, append([]ocispec.Descriptor{m.Config}, m.Layers...))
	changed := false
	for i, l := range m.Layers {
		comp, ok := images.LayerCompression(l.MediaType)
		if !ok || comp != "" || images.IsNonDistributable(l.MediaType) {
			continue
		}
		cd, err := e.compress(ctx, l, tr)
		if err != nil {
			return desc, fmt.Errorf("manifest %s: layer %d: %w", desc.Digest, i, err)
		}
		m.Layers[i], changed = cd, true
	}
	if !changed {
		return desc, nil
	}
	return e.storeJSON(ctx, desc, m, append([]ocispec.Descriptor{m.Config}, m.Layers...))
}

// storeJSON writes a changed manifest or index in place of old (same media
// type, platform and annotations of the descriptor) with labels keeping
// children.
func (e *Engine) storeJSON(ctx context.Context, old ocispec.Descriptor, v any, children []ocispec.Descriptor) (ocispec.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return old, err
	}
	desc := old
	desc.Digest, desc.Size = digest.FromBytes(data), int64(len(data))
	labels := images.ChildGCLabels(desc, children)
	err = content.WriteBlob(ctx, e.cfg.Content, "converted-"+desc.Digest.String(), bytes.NewReader(data), desc, content.WithLabels(labels))
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return old, fmt.Errorf("store converted %s: %w", desc.MediaType, err)
	}
	if errdefs.IsAlreadyExists(err) {
		if err := images.SetChildGCLabels(ctx, e.cfg.Content, desc, children); err != nil {
			return old, err
		}
	}
	return desc, nil
}

// compress returns the gzip-compressed form of the uncompressed layer
// layer: the blob its LabelCompressedGzip label names when that is still
// stored, else a new one compressed now and recorded (the layer labelled
// with the compressed digest, the compressed blob with the layer's as
// containerd.io/uncompressed).
func (e *Engine) compress(ctx context.Context, layer ocispec.Descriptor, tr *tracker) (ocispec.Descriptor, error) {
	out := ocispec.Descriptor{MediaType: gzipType(layer.MediaType), Annotations: layer.Annotations}
	info, err := e.cfg.Content.Info(ctx, layer.Digest)
	if err != nil {
		return out, fmt.Errorf("layer %s: %w", layer.Digest, err)
	}
	if d := digest.Digest(info.Labels[LabelCompressedGzip]); d != "" {
		if ci, err := e.cfg.Content.Info(ctx, d); err == nil {
			out.Digest, out.Size = d, ci.Size
			return out, nil
		}
	}
	dgst, size, err := e.compressBlob(ctx, layer, tr)
	if err != nil {
		return out, fmt.Errorf("compress layer %s: %w", layer.Digest, err)
	}
	out.Digest, out.Size = dgst, size
	upd := content.Info{Digest: layer.Digest, Labels: map[string]string{LabelCompressedGzip: dgst.String()}}
	if _, err := e.cfg.Content.Update(ctx, upd, "labels."+LabelCompressedGzip); err != nil {
		return out, fmt.Errorf("record compressed digest of layer %s: %w", layer.Digest, err)
	}
	return out, nil
}

// compressBlob gzips layer into a new blob labelled with the layer's
// digest as its uncompressed digest.
func (e *Engine) compressBlob(ctx context.Context, layer ocispec.Descriptor, tr *tracker) (digest.Digest, int64, error) {
	ra, err := e.cfg.Content.ReaderAt(ctx, layer)
	if err != nil {
		return "", 0, err
	}
	defer ra.Close()
	// A unique ref: concurrent pushes of one layer each compress it (gzip
	// is deterministic, so they make the same blob) instead of failing on
	// a busy ingest.
	var suffix [6]byte
	rand.Read(suffix[:])
	w, err := content.OpenWriter(ctx, e.cfg.Content, content.WithRef("compress-"+layer.Digest.Encoded()+"-"+hex.EncodeToString(suffix[:])))
	if err != nil {
		return "", 0, err
	}
	defer w.Close()
	zw, err := compression.CompressStream(w, compression.Gzip)
	if err != nil {
		return "", 0, err
	}
	src := &progressReader{r: content.NewReader(ra), fn: func(n int64) { tr.compressing(layer, n) }}
	if _, err := io.Copy(zw, src); err != nil {
		return "", 0, err
	}
	if err := zw.Close(); err != nil {
		return "", 0, err
	}
	st, err := w.Status()
	if err != nil {
		return "", 0, err
	}
	dgst := w.Digest()
	labels := map[string]string{diff.LabelUncompressed: layer.Digest.String()}
	err = w.Commit(ctx, st.Offset, dgst, content.WithLabels(labels))
	if errdefs.IsAlreadyExists(err) {
		upd := content.Info{Digest: dgst, Labels: labels}
		_, err = e.cfg.Content.Update(ctx, upd, "labels."+diff.LabelUncompressed)
	}
	if err != nil {
		return "", 0, err
	}
	return dgst, st.Offset, nil
}

// gzipType is the gzip media type of the family of an uncompressed layer
// type.
func gzipType(mt string) string {
	if images.IsDockerType(mt) {
		return images.MediaTypeDockerSchema2LayerGzip
	}
	return ocispec.MediaTypeImageLayerGzip
}

type progressReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.fn(p.n)
	return n, err
}
