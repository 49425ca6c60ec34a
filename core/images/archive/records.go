package archive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/images"
)

// records lists the image records roots call for, one per name; a name
// given to two different targets is an error.
func records(roots []root) ([]images.Image, error) {
	var out []images.Image
	byName := map[string]int{}
	for _, r := range roots {
		for _, name := range r.names {
			if i, ok := byName[name]; ok {
				if out[i].Target.Digest != r.desc.Digest {
					return nil, badArchive("it names two different images %s (%s and %s)", name, out[i].Target.Digest, r.desc.Digest)
				}
				continue
			}
			byName[name] = len(out)
			out = append(out, images.Image{Name: name, Target: r.desc})
		}
	}
	if len(out) == 0 {
		return nil, badArchive("it names no image; give a base name, digest names or an index name to import unnamed images")
	}
	return out, nil
}

// recordWriter creates or updates image records, remembering what it did
// so a failure part way can be undone.
type recordWriter struct {
	is      images.Store
	created []string
	updated []images.Image // previous versions
}

// writeRecords points each name at its target: a new record, or an
// existing one whose target changes (its labels stay). On failure the
// records already written are restored.
func writeRecords(ctx context.Context, is images.Store, want []images.Image) ([]images.Image, error) {
	rw := &recordWriter{is: is}
	out := make([]images.Image, 0, len(want))
	for _, img := range want {
		got, err := rw.write(ctx, img)
		if err != nil {
			rw.undo(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("image %s: %w", img.Name, err)
		}
		out = append(out, got)
	}
	return out, nil
}

func (rw *recordWriter) write(ctx context.Context, img images.Image) (images.Image, error) {
	prev, err := rw.is.Get(ctx, img.Name)
	if errdefs.IsNotFound(err) {
		created, cerr := rw.is.Create(ctx, img)
		if cerr == nil {
			rw.created = append(rw.created, img.Name)
			return created, nil
		}
		if !errdefs.IsAlreadyExists(cerr) {
			return images.Image{}, cerr
		}
		// Created by someone else meanwhile: update theirs.
		prev, err = rw.is.Get(ctx, img.Name)
	}
	if err != nil {
		return images.Image{}, err
	}
	if sameTarget(prev, img) {
		return prev, nil
	}
	updated, err := rw.is.Update(ctx, images.Image{Name: img.Name, Target: img.Target}, "target")
	if err != nil {
		return images.Image{}, err
	}
	rw.updated = append(rw.updated, prev)
	return updated, nil
}

func sameTarget(a, b images.Image) bool {
	return a.Target.Digest == b.Target.Digest && a.Target.MediaType == b.Target.MediaType && a.Target.Size == b.Target.Size
}

func (rw *recordWriter) undo(ctx context.Context) {
	var errs []error
	for _, name := range rw.created {
		if err := rw.is.Delete(ctx, name); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	for _, prev := range rw.updated {
		if _, err := rw.is.Update(ctx, prev, "target"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		slog.WarnContext(ctx, "image import: restoring image records after a failure", "error", err)
	}
}
