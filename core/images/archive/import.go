// Package archive imports and exports image archives: OCI image layouts
// in a tar (what `ctr images export` and `docker save` since Docker 25
// write) and classic `docker save` archives, with the semantics of
// containerd's importer and exporter.
package archive

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/containerd/platforms"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/leases"
)

// ImportOptions adjust Import. The zero value imports the current
// platform and names images only as the archive does.
type ImportOptions struct {
	// Platform chooses, in each index, the one manifest (through nested
	// indexes) to import; nil means platforms.Default(). Blobs of other
	// platforms may be absent from the archive.
	Platform platforms.MatchComparer
	// AllPlatforms imports every manifest of every index; then every blob
	// must be present.
	AllPlatforms bool
	// BaseName is a repository ("docker.io/library/app", "app") that turns
	// a bare OCI ref.name tag into a name, like ctr's --base-name. With it,
	// full ref.name references outside the repository are ignored.
	BaseName string
	// DigestNames, when set to a repository, also names each image
	// "<DigestNames>@<digest>", like ctr's --digests.
	DigestNames string
	// SkipDigestForNamed gives digest names only to images without one.
	SkipDigestForNamed bool
	// IndexName keeps the archive's index itself as an image of that name.
	IndexName string
	// Progress, when set, is called as the archive is read.
	Progress func(Progress)
}

// Progress reports how far an import has come: bytes of the caller's
// stream read and blobs stored.
type Progress struct {
	Bytes int64
	Blobs int
}

// importLeaseExpiry is how long the blobs of an import that dies with the
// daemon are kept before garbage collection takes them.
const importLeaseExpiry = 24 * time.Hour

type importer struct {
	cs         content.Store
	opts       ImportOptions
	base       string // normalised BaseName
	digestBase string // normalised DigestNames
	indexName  string // normalised IndexName
	refs       *refGen
}

// Import reads an image archive from r (a tar, optionally gzip or zstd
// compressed): an OCI image layout (oci-layout, index.json, blobs/) or a
// `docker save` archive (manifest.json with configs and layer tars). Every
// blob is stored as it streams past and verified against its digest; then
// the images are resolved, their content checked to be complete for the
// chosen platforms, GC labels set so each blob keeps its children, and an
// image record created or updated for every name. It returns the image
// records.
//
// Names: an index.json entry's io.containerd.image.name, else its
// org.opencontainers.image.ref.name (see BaseName); Docker RepoTags (or
// the legacy repositories file) in normalised form; optional digest and
// index names.
//
// All of it runs under a temporary lease from lm (unless ctx carries a
// lease already), deleted at the end, so after a failure garbage
// collection takes whatever was written; no image record is left
// changed. lm may be nil when the caller protects the content itself.
// Archive defects are errdefs.ErrInvalidArgument naming the problem; an
// image without a manifest for the platform is errdefs.ErrNotFound.
func Import(ctx context.Context, cs content.Store, is images.Store, lm leases.Manager, r io.Reader, opts ImportOptions) ([]images.Image, error) {
	imp, err := newImporter(cs, opts)
	if err != nil {
		return nil, err
	}
	ctx, release, err := withTemporaryLease(ctx, lm)
	if err != nil {
		return nil, err
	}
	defer release()
	f, err := readArchive(ctx, cs, imp.refs, r, opts.Progress)
	if err != nil {
		return nil, err
	}
	roots, err := imp.roots(ctx, f)
	if err != nil {
		return nil, err
	}
	want, err := records(roots)
	if err != nil {
		return nil, err
	}
	p := newPlanner(cs, imp.platform())
	for _, r := range roots {
		if err := p.root(ctx, r); err != nil {
			return nil, err
		}
	}
	if err := p.apply(ctx); err != nil {
		return nil, err
	}
	return writeRecords(ctx, is, want)
}

func newImporter(cs content.Store, opts ImportOptions) (*importer, error) {
	imp := &importer{cs: cs, opts: opts, refs: newRefGen()}
	var err error
	if imp.base, err = normalizeBase(opts.BaseName, "base name"); err != nil {
		return nil, err
	}
	if imp.digestBase, err = normalizeBase(opts.DigestNames, "digest names"); err != nil {
		return nil, err
	}
	if opts.IndexName != "" {
		if imp.indexName, err = normalizeName(opts.IndexName, "index name"); err != nil {
			return nil, err
		}
	}
	return imp, nil
}

func (imp *importer) platform() platforms.MatchComparer {
	switch {
	case imp.opts.AllPlatforms:
		return nil
	case imp.opts.Platform != nil:
		return imp.opts.Platform
	}
	return platforms.Default()
}

// withTemporaryLease returns ctx under a new expiring lease and a function
// that deletes it, or ctx unchanged when it has a lease or lm is nil.
func withTemporaryLease(ctx context.Context, lm leases.Manager) (context.Context, func(), error) {
	if _, ok := leases.FromContext(ctx); ok || lm == nil {
		return ctx, func() {}, nil
	}
	l, err := lm.Create(ctx, leases.WithExpiration(importLeaseExpiry), leases.WithTemporary())
	if err != nil {
		return nil, nil, fmt.Errorf("create import lease: %w", err)
	}
	release := func() {
		// Also after cancellation: the lease must go so GC can collect.
		if err := lm.Delete(context.WithoutCancel(ctx), l); err != nil {
			slog.WarnContext(ctx, "image import: delete lease; it expires by itself", "lease", l.ID, "error", err)
		}
	}
	return leases.WithLease(ctx, l.ID), release, nil
}

// refGen names the ingests of one import uniquely, so concurrent imports
// never resume or abort each other's.
type refGen struct {
	prefix string
	seq    int
}

func newRefGen() *refGen {
	return &refGen{prefix: "import-" + randomHex() + "-"}
}

func (g *refGen) next() string {
	g.seq++
	return fmt.Sprintf("%s%d", g.prefix, g.seq)
}
