package unpack

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/snapshots"
)

// Hook unpacks pulled layers as they land. Its Layer method has the shape
// of core/remotes' LayerHook: the pull engine calls it once per layer as
// soon as the blob is in the store (after the manifest's config), from
// many goroutines and in any order. Layer i is applied as soon as it has
// landed and layer i-1 is committed, by whichever call finds it ready:
// Layer never waits for other layers, so a pull is never held up by one
// that has not arrived. After the pull, Finish unpacks what is left (layers
// that were present already or never announced) and marks the image
// unpacked.
//
// Manifests for other platforms than the hook's are ignored. The pull's
// context should carry a lease; without one, extraction snapshots are
// labelled containerd.io/gc.root while they are worked on.
type Hook struct {
	u    *Unpacker
	name string
	sn   snapshots.Snapshotter
	opts []UnpackOpt

	mu      sync.Mutex
	streams map[digest.Digest]*stream
}

// stream is the state of one manifest's layers.
type stream struct {
	ready chan struct{} // closed once job (or err) is set
	job   *job          // nil: another platform's manifest
	err   error         // set up failure, then the first layer failure

	mu      sync.Mutex
	landed  []bool
	next    int           // first layer not yet committed
	stopped chan struct{} // closed when the running applier stops; nil when none runs
	applied int
}

// Hook returns a hook unpacking into sn (named snapshotter) with opts.
func (u *Unpacker) Hook(snapshotter string, sn snapshots.Snapshotter, opts ...UnpackOpt) *Hook {
	return &Hook{u: u, name: snapshotter, sn: sn, opts: opts, streams: map[digest.Digest]*stream{}}
}

// Layer records that layer index of manifest is in the store and applies
// every layer that is now ready. It returns the error of a layer it
// applied; a layer another call applies reports there.
func (h *Hook) Layer(ctx context.Context, manifest ocispec.Descriptor, index int, layer ocispec.Descriptor) error {
	s := h.stream(ctx, manifest)
	<-s.ready
	if s.job == nil {
		return s.err
	}
	if index < 0 || index >= len(s.job.layers) || s.job.layers[index].Digest != layer.Digest {
		return fmt.Errorf("unpack manifest %s: layer %d is %s, not %s: %w", manifest.Digest, index, layerDigest(s.job, index), layer.Digest, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	s.landed[index] = true
	if s.stopped != nil || s.err != nil || !s.readyLocked() {
		s.mu.Unlock()
		return nil
	}
	s.stopped = make(chan struct{})
	s.mu.Unlock()
	return h.drain(ctx, s)
}

func layerDigest(j *job, i int) string {
	if i < 0 || i >= len(j.layers) {
		return "out of range"
	}
	return j.layers[i].Digest.String()
}

// readyLocked reports whether the next layer can be applied.
func (s *stream) readyLocked() bool {
	return s.next < len(s.landed) && s.landed[s.next]
}

// drain applies layers in order while they are ready; the caller is the
// stream's only applier until it returns.
func (h *Hook) drain(ctx context.Context, s *stream) error {
	for {
		s.mu.Lock()
		if s.err != nil || !s.readyLocked() {
			close(s.stopped)
			s.stopped = nil
			s.mu.Unlock()
			return nil
		}
		i := s.next
		s.mu.Unlock()
		applied, err := h.u.unpackLayer(ctx, s.job, i)
		s.mu.Lock()
		if err != nil {
			s.err = err
			close(s.stopped)
			s.stopped = nil
			s.mu.Unlock()
			return err
		}
		s.next++
		if applied {
			s.applied++
		}
		s.mu.Unlock()
	}
}

// stream returns manifest's state, reading the manifest and config on the
// first call.
func (h *Hook) stream(ctx context.Context, manifest ocispec.Descriptor) *stream {
	h.mu.Lock()
	s, ok := h.streams[manifest.Digest]
	if !ok {
		s = &stream{ready: make(chan struct{})}
		h.streams[manifest.Digest] = s
	}
	h.mu.Unlock()
	if !ok {
		s.job, s.err = h.newJob(ctx, manifest)
		if s.job != nil {
			s.landed = make([]bool, len(s.job.layers))
		}
		close(s.ready)
	}
	return s
}

// newJob reads manifest and its config; a manifest of another platform
// gives no job and no error.
func (h *Hook) newJob(ctx context.Context, desc ocispec.Descriptor) (*job, error) {
	o := unpackOpts(h.opts)
	if desc.Platform != nil && !o.platform.Match(*desc.Platform) {
		return nil, nil
	}
	m, err := images.ReadManifest(ctx, h.u.content, desc)
	if err != nil {
		return nil, fmt.Errorf("unpack manifest %s: %w", desc.Digest, err)
	}
	if desc.Platform == nil {
		img, err := images.ReadConfig(ctx, h.u.content, m.Config)
		if err != nil {
			return nil, fmt.Errorf("unpack manifest %s: %w", desc.Digest, err)
		}
		if img.OS != "" && !o.platform.Match(platforms.Normalize(img.Platform)) {
			return nil, nil
		}
	}
	if h.sn == nil || h.name == "" {
		return nil, fmt.Errorf("unpack manifest %s: snapshotter %q is not available: %w", desc.Digest, h.name, errdefs.ErrInvalidArgument)
	}
	return h.u.jobFor(ctx, desc, m, h.name, h.sn, o)
}

// Finish waits for layers being applied, then unpacks target like Unpack
// (which reuses every layer the hook committed) and returns its result,
// Applied counting the hook's layers too. The first layer error the hook
// met is returned instead, if any.
func (h *Hook) Finish(ctx context.Context, target ocispec.Descriptor) (Result, error) {
	h.mu.Lock()
	streams := make([]*stream, 0, len(h.streams))
	for _, s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	var errs []error
	applied := 0
	for _, s := range streams {
		if err := s.wait(ctx); err != nil {
			return Result{}, err
		}
		s.mu.Lock()
		if s.err != nil {
			errs = append(errs, s.err)
		}
		applied += s.applied
		s.mu.Unlock()
	}
	if len(errs) > 0 {
		return Result{}, errors.Join(errs...)
	}
	res, err := h.u.Unpack(ctx, target, h.name, h.sn, h.opts...)
	res.Applied += applied
	return res, err
}

// wait returns when no layer of s is being applied.
func (s *stream) wait(ctx context.Context) error {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		s.mu.Lock()
		stopped := s.stopped
		s.mu.Unlock()
		if stopped == nil {
			return nil
		}
		select {
		case <-stopped:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
