package remotes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/reference"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/registry/remote"
)

// PushOptions control a push.
type PushOptions struct {
	// Progress is told the bytes sent of every blob.
	Progress ProgressFunc
	// MountFrom names repositories on the target registry that may already
	// hold the blobs. They are tried for a cross-repository mount after the
	// repositories named by each blob's distribution-source label.
	MountFrom []string
}

// Push uploads the image graph under root from provider to ref: blobs
// first (skipping those the repository has, mounting from another
// repository of the same registry when one is known to hold them), then
// manifests children before parents, the root last, tagged when ref has a
// tag. Every manifest and index of the graph must be in provider.
func (r *Resolver) Push(ctx context.Context, ref string, provider content.Provider, root ocispec.Descriptor, opts PushOptions) error {
	name, err := ParseRef(ref)
	if err != nil {
		return err
	}
	if name.Digest != "" && name.Digest != root.Digest {
		return errInvalid("push %s: reference digest differs from the pushed %s", name, root.Digest)
	}
	if err := checkRoot(root); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	eps, err := r.endpoints(name.Domain, hosts.CapPush)
	if err != nil {
		return err
	}
	ps := &pusher{r: r, ep: eps[0], name: name, provider: provider, opts: opts}
	ps.repo = ps.ep.repository(ctx, name.Path)
	g, err := collectGraph(ctx, provider, root)
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	if err := ps.pushBlobs(ctx, g.blobs); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	for _, m := range g.manifests {
		if err := ps.pushManifest(ctx, m, g.data[m.Digest.String()], m.Digest == root.Digest); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
	}
	return nil
}

type pusher struct {
	r        *Resolver
	ep       *endpoint
	repo     *remote.Repository
	name     reference.Reference
	provider content.Provider
	opts     PushOptions
}

// graph is an image's content in upload order.
type graph struct {
	blobs     []ocispec.Descriptor
	manifests []ocispec.Descriptor // children before parents
	data      map[string][]byte    // manifest bytes by digest
}

// collectGraph walks root's manifests in provider (post-order), listing
// every config and layer once.
func collectGraph(ctx context.Context, provider content.Provider, root ocispec.Descriptor) (*graph, error) {
	g := &graph{data: map[string][]byte{}}
	seen := map[string]bool{}
	var visit func(desc ocispec.Descriptor, depth int) error
	visit = func(desc ocispec.Descriptor, depth int) error {
		key := desc.Digest.String()
		if seen[key] {
			return nil
		}
		seen[key] = true
		if !isIndex(desc.MediaType) && !isManifest(desc.MediaType) {
			if !isNonDistributable(desc.MediaType) {
				g.blobs = append(g.blobs, desc)
			}
			return nil
		}
		if depth > maxIndexDepth {
			return errInvalid("index %s: nested more than %d deep", desc.Digest, maxIndexDepth)
		}
		children, data, err := readChildren(ctx, provider, desc)
		if err != nil {
			return err
		}
		for _, c := range children {
			if err := visit(c, depth+1); err != nil {
				return err
			}
		}
		g.data[key] = data
		g.manifests = append(g.manifests, desc)
		return nil
	}
	return g, visit(root, 0)
}

// readChildren reads a manifest or index from the store and lists what it
// references.
func readChildren(ctx context.Context, provider content.Provider, desc ocispec.Descriptor) ([]ocispec.Descriptor, []byte, error) {
	if err := checkManifestSize(desc); err != nil {
		return nil, nil, err
	}
	data, err := readStored(ctx, provider, desc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s is not readable from the content store: %w", desc.MediaType, desc.Digest, err)
	}
	if isIndex(desc.MediaType) {
		idx, err := parseIndex(desc, data)
		return idx.Manifests, data, err
	}
	m, err := parseManifest(desc, data)
	return append([]ocispec.Descriptor{m.Config}, m.Layers...), data, err
}

// pushBlobs uploads blobs concurrently within the Resolver's bound.
func (ps *pusher) pushBlobs(ctx context.Context, blobs []ocispec.Descriptor) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, b := range blobs {
		g.Go(func() error {
			if err := acquire(gctx, ps.r.uploads); err != nil {
				return err
			}
			defer release(ps.r.uploads)
			return ps.pushBlob(gctx, b)
		})
	}
	return g.Wait()
}

func (ps *pusher) pushBlob(ctx context.Context, desc ocispec.Descriptor) error {
	exists, err := ps.repo.Blobs().Exists(ctx, desc)
	if err != nil {
		return fmt.Errorf("check blob %s: %w", desc.Digest, classify(ps.ep, err))
	}
	if exists {
		ps.opts.Progress.report(desc, desc.Size)
		return nil
	}
	open := func() (io.ReadCloser, error) { return ps.open(ctx, desc) }
	for _, from := range ps.mountSources(ctx, desc) {
		// A 202 answer means the registry could not mount and oras goes on
		// to upload through open; either way the blob is then there.
		err := ps.repo.Mount(ctx, desc, from, open)
		if err == nil {
			ps.opts.Progress.report(desc, desc.Size)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ps.r.log.DebugContext(ctx, "cross-repository mount failed", "digest", desc.Digest, "from", from, "error", err)
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := ps.repo.Push(ctx, desc, rc); err != nil {
		return fmt.Errorf("upload blob %s: %w", desc.Digest, classify(ps.ep, err))
	}
	return nil
}

// open reads a blob from the provider, reporting progress as it is sent.
func (ps *pusher) open(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	ra, err := ps.provider.ReaderAt(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("blob %s is not readable from the content store: %w", desc.Digest, err)
	}
	if ra.Size() != desc.Size {
		ra.Close()
		return nil, fmt.Errorf("blob %s is %d bytes in the store, the manifest says %d: %w", desc.Digest, ra.Size(), desc.Size, errdefs.ErrFailedPrecondition)
	}
	return &progressReader{r: io.NewSectionReader(ra, 0, desc.Size), c: ra, desc: desc, fn: ps.opts.Progress}, nil
}

// mountSources lists repositories of the target registry known to hold
// desc: from its distribution-source label, then PushOptions.MountFrom.
func (ps *pusher) mountSources(ctx context.Context, desc ocispec.Descriptor) []string {
	var out []string
	if m, ok := ps.provider.(content.Manager); ok {
		if info, err := m.Info(ctx, desc.Digest); err == nil {
			out = splitList(info.Labels[LabelDistributionSource+ps.name.Domain])
		}
	}
	out = append(out, ps.opts.MountFrom...)
	var srcs []string
	for _, s := range out {
		if s != "" && s != ps.name.Path && !slices.Contains(srcs, s) {
			srcs = append(srcs, s)
		}
	}
	return srcs
}

func (ps *pusher) pushManifest(ctx context.Context, desc ocispec.Descriptor, data []byte, isRoot bool) error {
	ms := ps.repo.Manifests()
	if !isRoot {
		exists, err := ms.Exists(ctx, desc)
		if err != nil {
			return fmt.Errorf("check manifest %s: %w", desc.Digest, classify(ps.ep, err))
		}
		if exists {
			return nil
		}
	}
	var err error
	if isRoot && ps.name.Tag != "" {
		err = ms.PushReference(ctx, desc, bytes.NewReader(data), ps.name.Tag)
	} else {
		err = ms.Push(ctx, desc, bytes.NewReader(data))
	}
	if err != nil {
		return fmt.Errorf("upload manifest %s: %w", desc.Digest, classify(ps.ep, err))
	}
	ps.opts.Progress.report(desc, desc.Size)
	return nil
}

// progressReader reports bytes read and closes the store reader.
type progressReader struct {
	r    io.Reader
	c    io.Closer
	desc ocispec.Descriptor
	done int64
	fn   ProgressFunc
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if n > 0 {
		p.fn.report(p.desc, p.done)
	}
	return n, err
}

func (p *progressReader) Close() error { return p.c.Close() }
