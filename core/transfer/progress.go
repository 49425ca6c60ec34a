package transfer

import (
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
)

// Progress events. The per-descriptor ones carry containerd's names, so a
// containerd 2 client's progress display (ctr) understands them; events
// without a Name are free-text status lines.
const (
	// EventResolving: the reference is being resolved (Name is the
	// reference).
	EventResolving = "resolving"
	// EventResolved: the reference resolved to Desc.
	EventResolved = "resolved"
	// EventWaiting: a blob is known and waits for a download slot.
	EventWaiting = "waiting"
	// EventDownloading: Progress of Total bytes of a blob are held.
	EventDownloading = "downloading"
	// EventUploading: Progress of Total bytes of a blob were sent.
	EventUploading = "uploading"
	// EventComplete: the blob is in the store (or, pushing, in the
	// registry).
	EventComplete = "complete"
	// EventExtracting: a layer is being applied; Progress counts the
	// compressed bytes read of Total.
	EventExtracting = "extracting"
	// EventExtracted: the layer has been applied into its snapshot.
	EventExtracted = "extracted"
	// EventCompressing: an uncompressed layer is being compressed for a
	// push.
	EventCompressing = "compressing"
	// EventSaved: the image record Name points at Desc.
	EventSaved = "saved"
	// EventUnpacked: the image is unpacked; Name is the snapshotter,
	// Desc the manifest unpacked.
	EventUnpacked = "unpacked"
	// EventPushed: the reference Name now points at Desc in the registry.
	EventPushed = "pushed"
)

// Progress is one progress event (containerd's transfer.Progress).
type Progress struct {
	Event string
	// Name identifies what the event is about: a blob's ingest ref
	// ("layer-sha256:…"), an image name, or "" for a status line.
	Name string
	// Parents are the names of the blobs that reference this one.
	Parents  []string
	Progress int64
	Total    int64
	Desc     *ocispec.Descriptor
}

// ProgressFunc receives progress events. Calls come from one goroutine at a
// time but from many goroutines in turn; it should return quickly.
type ProgressFunc func(Progress)

// progressInterval spaces byte-count events of one blob, so a fast transfer
// does not flood a client with messages.
const progressInterval = 100 * time.Millisecond

// tracker turns the byte counts of transfers into throttled events, one
// stream per blob: waiting, then downloading (or uploading, extracting)
// with counts, then complete (or extracted).
type tracker struct {
	mu       sync.Mutex
	fn       ProgressFunc
	moving   string // EventDownloading or EventUploading
	blobs    map[digest.Digest]*blobState
	parents  map[digest.Digest][]string
	interval time.Duration
	// layersCommit: layers are complete when committed (pulls), not when
	// their last byte moved (pushes).
	layersCommit bool
	// ahead inflates a pull's layers ahead of their turn.
	ahead *ahead
}

type blobState struct {
	desc     ocispec.Descriptor
	event    string
	last     time.Time
	reported int64
}

func newTracker(fn ProgressFunc, moving string) *tracker {
	return &tracker{
		fn: fn, moving: moving, interval: progressInterval,
		blobs: map[digest.Digest]*blobState{}, parents: map[digest.Digest][]string{},
	}
}

// status sends an event with no blob.
func (t *tracker) status(p Progress) {
	if t == nil || t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fn(p)
}

// children records that parent references children and announces each
// child not seen yet as waiting.
func (t *tracker) children(parent ocispec.Descriptor, children []ocispec.Descriptor) {
	if t == nil || t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pname := RefKey(parent)
	for _, c := range children {
		t.parents[c.Digest] = appendOnce(t.parents[c.Digest], pname)
		if _, ok := t.blobs[c.Digest]; !ok {
			t.blobs[c.Digest] = &blobState{desc: c}
			t.emitLocked(t.blobs[c.Digest], EventWaiting, 0)
		}
	}
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// transferred is told the bytes of desc held (or sent) so far.
func (t *tracker) transferred(desc ocispec.Descriptor, done int64) {
	if t == nil || t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.blob(desc)
	switch {
	case b.event == EventComplete || b.event == EventExtracting || b.event == EventExtracted:
		return
	case done >= desc.Size && !(t.layersCommit && images.IsLayerType(desc.MediaType)):
		t.emitLocked(b, EventComplete, desc.Size)
	case b.event != t.moving || time.Since(b.last) >= t.interval || done >= desc.Size:
		t.emitLocked(b, t.moving, done)
	}
}

// committed marks a layer verified and in the store. A pull reports layers
// complete only then, not when their last byte arrives, since a layer that
// fails verification is not complete.
func (t *tracker) committed(desc ocispec.Descriptor) {
	if t == nil || t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.blob(desc)
	if b.event == EventComplete || b.event == EventExtracting || b.event == EventExtracted {
		return
	}
	t.emitLocked(b, EventComplete, desc.Size)
}

// extracting is told the compressed bytes of layer desc read by the
// applier so far.
func (t *tracker) extracting(desc ocispec.Descriptor, done int64) {
	if t == nil || t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.blob(desc)
	if b.event == EventExtracted {
		return
	}
	if b.event != EventExtracting || time.Since(b.last) >= t.interval || done >= desc.Size {
		if done == b.reported && b.event == EventExtracting {
			return
		}
		t.emitLocked(b, EventExtracting, done)
	}
}

// extracted marks layer desc applied and committed.
func (t *tracker) extracted(desc ocispec.Descriptor) {
	if t == nil || t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.emitLocked(t.blob(desc), EventExtracted, desc.Size)
}

// compressing reports an uncompressed layer being compressed.
func (t *tracker) compressing(desc ocispec.Descriptor, done int64) {
	if t == nil || t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.blob(desc)
	if b.event != EventCompressing || time.Since(b.last) >= t.interval || done >= desc.Size {
		t.emitLocked(b, EventCompressing, done)
	}
}

func (t *tracker) blob(desc ocispec.Descriptor) *blobState {
	b, ok := t.blobs[desc.Digest]
	if !ok {
		b = &blobState{desc: desc}
		t.blobs[desc.Digest] = b
	}
	return b
}

func (t *tracker) emitLocked(b *blobState, event string, done int64) {
	b.event, b.last, b.reported = event, time.Now(), done
	desc := b.desc
	t.fn(Progress{
		Event:    event,
		Name:     RefKey(desc),
		Parents:  t.parents[desc.Digest],
		Progress: done,
		Total:    desc.Size,
		Desc:     &desc,
	})
}

// RefKey names a blob in progress events the way containerd names its
// ingests: "<kind>-<digest>", kind being index, manifest, config, layer or
// unknown.
func RefKey(desc ocispec.Descriptor) string {
	kind := "unknown"
	switch mt := desc.MediaType; {
	case strings.Contains(mt, "index") || strings.Contains(mt, "manifest.list"):
		kind = "index"
	case strings.Contains(mt, "manifest"):
		kind = "manifest"
	case strings.Contains(mt, "config"):
		kind = "config"
	case strings.Contains(mt, "layer") || strings.Contains(mt, "rootfs"):
		kind = "layer"
	}
	return kind + "-" + desc.Digest.String()
}
