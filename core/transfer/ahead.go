package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/archive/compression"
	"github.com/berthd/berth/core/content"
)

// Layers are applied one after the other, each on its parent, so one
// layer's work — inflating and extracting thousands of files — would
// hold up all the layers above it while other cores idle. A layer that
// lands while an earlier one is still to be applied is therefore worked on
// at once, in the background, in a scratch folder:
//
//   - into overlayfs (each layer a directory of its own, written without
//     looking at the layers below it) it is extracted in full, in overlay
//     whiteout mode, exactly as the applier would into its snapshot's upper
//     directory, and its diff ID computed on the way; when its turn comes
//     the applier (TrackApplies) checks the diff ID and moves the entries
//     into the upper directory, which takes a few renames;
//   - into any other snapshotter it is inflated into a plain tar, which the
//     applier reads instead of the blob (TrackReads), so that the chain
//     waits for extraction alone.
//
// A layer whose turn has come when it lands is applied from the blob,
// streaming, as are layers whose background work failed or whose snapshot
// turns out not to be an overlay upper directory on the scratch folder's
// filesystem. The work starts from the verified blob and the diff ID is
// checked before anything is moved, so nothing is trusted that would not be
// otherwise. Scratch entries are removed once their layer is applied, and
// all of them when the pull ends.

// ahead is one pull's background layer work.
type ahead struct {
	dir   string
	store content.Provider
	slots chan struct{}
	// extract makes staged directories (overlayfs) rather than plain tars.
	extract bool
	tr      *tracker

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	order   map[digest.Digest][]digest.Digest // manifest → layers
	applied map[digest.Digest]bool
	plain   map[digest.Digest]*plainLayer
}

// plainLayer is a layer's background work, once done is closed: a plain
// tar of size bytes at path, or (staged) a directory holding the extracted
// layer whose tar had digest diffID and size bytes.
type plainLayer struct {
	done   chan struct{}
	digest digest.Digest
	staged bool
	path   string
	size   int64
	diffID digest.Digest
	err    error
}

var errNotCompressed = errors.New("layer is not compressed")

func newAhead(ctx context.Context, dir string, store content.Provider, slots chan struct{}, extract bool, tr *tracker) *ahead {
	if dir == "" {
		return nil
	}
	actx, cancel := context.WithCancel(ctx)
	return &ahead{
		dir: dir, store: store, slots: slots, extract: extract, tr: tr, ctx: actx, cancel: cancel,
		order: map[digest.Digest][]digest.Digest{}, applied: map[digest.Digest]bool{}, plain: map[digest.Digest]*plainLayer{},
	}
}

// manifest records the layer order of a manifest.
func (a *ahead) manifest(desc ocispec.Descriptor, m ocispec.Manifest) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range m.Layers {
		a.order[desc.Digest] = append(a.order[desc.Digest], l.Digest)
	}
}

// landed is told that layer index of manifest is in the store; it starts
// inflating it unless its turn has already come.
func (a *ahead) landed(manifest ocispec.Descriptor, index int, layer ocispec.Descriptor) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, known := a.order[manifest.Digest]; !known {
		return // no unpack of this pull uses the manifest
	}
	if _, ok := a.plain[layer.Digest]; ok || a.applied[layer.Digest] || a.turnLocked(manifest.Digest, index) {
		return
	}
	// Pulls sharing layers: one works on a layer ahead, the others take
	// the snapshot it commits (the unpacker extracts each chain once).
	if !claims.take(layer.Digest) {
		return
	}
	pl := &plainLayer{done: make(chan struct{}), staged: a.extract, digest: layer.Digest}
	a.plain[layer.Digest] = pl
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(pl.done)
		if pl.staged {
			pl.path, pl.diffID, pl.size, pl.err = a.stage(layer)
		} else {
			pl.path, pl.size, pl.err = a.inflate(layer)
		}
	}()
}

// turnLocked reports whether every layer below index is applied.
func (a *ahead) turnLocked(manifest digest.Digest, index int) bool {
	layers := a.order[manifest]
	for i := 0; i < index && i < len(layers); i++ {
		if !a.applied[layers[i]] {
			return false
		}
	}
	return true
}

// inflate writes the layer's uncompressed tar into the scratch folder,
// one layer at a time per slot.
func (a *ahead) inflate(layer ocispec.Descriptor) (string, int64, error) {
	select {
	case a.slots <- struct{}{}:
	case <-a.ctx.Done():
		return "", 0, a.ctx.Err()
	}
	defer func() { <-a.slots }()
	ra, err := a.store.ReaderAt(a.ctx, layer)
	if err != nil {
		return "", 0, err
	}
	defer ra.Close()
	rc, c, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	if c == compression.Uncompressed {
		return "", 0, errNotCompressed
	}
	f, err := os.CreateTemp(a.dir, "layer-*.tar")
	if err != nil {
		return "", 0, err
	}
	n, err := copyCtx(a.ctx, f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", 0, fmt.Errorf("inflate layer %s ahead: %w", layer.Digest, err)
	}
	return f.Name(), n, nil
}

var aheadBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// copyCtx copies until EOF or the context ends.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	bp := aheadBufs.Get().(*[]byte)
	defer aheadBufs.Put(bp)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := r.Read(*bp)
		if n > 0 {
			if _, werr := w.Write((*bp)[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// open returns the plain tar of layer when one is being made, waiting for
// it; ok is false when the blob itself is to be read.
func (a *ahead) open(ctx context.Context, layer ocispec.Descriptor) (content.ReaderAt, bool) {
	if a == nil {
		return nil, false
	}
	a.mu.Lock()
	pl, ok := a.plain[layer.Digest]
	a.mu.Unlock()
	if !ok || pl.staged {
		return nil, false
	}
	select {
	case <-pl.done:
	case <-ctx.Done():
		return nil, false
	}
	if pl.err != nil {
		return nil, false
	}
	f, err := os.Open(pl.path)
	if err != nil {
		return nil, false
	}
	return &fileReaderAt{File: f, size: pl.size}, true
}

type fileReaderAt struct {
	*os.File
	size int64
}

func (f *fileReaderAt) Size() int64 { return f.size }

// done marks layer applied and drops its plain tar.
func (a *ahead) done(layer ocispec.Descriptor) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applied[layer.Digest] = true
	pl, ok := a.plain[layer.Digest]
	if !ok {
		return
	}
	select {
	case <-pl.done:
		pl.remove()
		delete(a.plain, layer.Digest)
	default:
		// Still inflating (the applier gave up waiting): close removes it.
	}
}

// close stops inflating and removes every plain tar left.
func (a *ahead) close() {
	if a == nil {
		return
	}
	a.cancel()
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	for d, pl := range a.plain {
		pl.remove()
		delete(a.plain, d)
	}
}

// remove drops the scratch entry (a staged directory is empty once moved
// into its snapshot, and whole only when it was not used).
func (pl *plainLayer) remove() {
	if pl.path != "" {
		os.RemoveAll(pl.path)
		pl.path = ""
	}
	claims.drop(pl.digest)
}

// claims are the layers some pull of this process works on ahead.
var claims = claimSet{m: map[digest.Digest]bool{}}

type claimSet struct {
	mu sync.Mutex
	m  map[digest.Digest]bool
}

// take claims d, unless another pull has.
func (c *claimSet) take(d digest.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[d] {
		return false
	}
	c.m[d] = true
	return true
}

func (c *claimSet) drop(d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, d)
}
