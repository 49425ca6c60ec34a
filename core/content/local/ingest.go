package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/filters"
)

// ingestMeta is what an ingest folder records besides its data.
type ingestMeta struct {
	ref       string
	total     int64
	expected  digest.Digest
	startedAt time.Time
	updatedAt time.Time
}

// writeIngestMeta records m in dir. Each file is small and written whole;
// a torn write after a crash makes the ingest unreadable, and a Writer then
// starts it over (see openIngest).
func writeIngestMeta(dir string, m ingestMeta) error {
	files := map[string]string{
		"ref":       m.ref,
		"startedat": m.startedAt.UTC().Format(time.RFC3339Nano),
		"updatedat": m.updatedAt.UTC().Format(time.RFC3339Nano),
	}
	if m.total > 0 {
		files["total"] = strconv.FormatInt(m.total, 10)
	}
	if m.expected != "" {
		files["expected"] = m.expected.String()
	}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			return fmt.Errorf("write ingest %s: %w", name, err)
		}
	}
	return nil
}

func readIngestMeta(dir string) (ingestMeta, error) {
	var m ingestMeta
	ref, err := os.ReadFile(filepath.Join(dir, "ref"))
	if err != nil {
		return m, err
	}
	m.ref = string(ref)
	if m.startedAt, err = readTime(filepath.Join(dir, "startedat")); err != nil {
		return m, err
	}
	if m.updatedAt, err = readTime(filepath.Join(dir, "updatedat")); err != nil {
		return m, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "total")); err == nil {
		if m.total, err = strconv.ParseInt(string(b), 10, 64); err != nil || m.total < 0 {
			return m, fmt.Errorf("ingest total %q is not a size", b)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "expected")); err == nil {
		m.expected = digest.Digest(b)
		if err := m.expected.Validate(); err != nil {
			return m, fmt.Errorf("ingest expected digest %q: %w", b, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	return m, nil
}

func readTime(path string) (time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, fmt.Errorf("ingest timestamp %s: %w", filepath.Base(path), err)
	}
	return t, nil
}

// readStatus reads the ingest in dir. An ingest missing its data or ref
// (aborted, committed, or half-created) is errdefs.ErrNotFound.
func readStatus(dir string) (content.Status, error) {
	fi, err := os.Stat(filepath.Join(dir, "data"))
	if err != nil {
		return content.Status{}, ingestErr(dir, err)
	}
	m, err := readIngestMeta(dir)
	if err != nil {
		return content.Status{}, ingestErr(dir, err)
	}
	updated := m.updatedAt
	if fi.ModTime().After(updated) {
		updated = fi.ModTime() // updatedat is only rewritten on Close
	}
	return content.Status{
		Ref:       m.ref,
		Offset:    fi.Size(),
		Total:     m.total,
		Expected:  m.expected,
		StartedAt: m.startedAt,
		UpdatedAt: updated,
	}, nil
}

func ingestErr(dir string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ingest %s: %w", filepath.Base(dir), errdefs.ErrNotFound)
	}
	return fmt.Errorf("ingest %s: %w", filepath.Base(dir), err)
}

// Status reports the ingest named ref, whether or not a writer holds it.
func (s *Store) Status(ctx context.Context, ref string) (content.Status, error) {
	st, err := readStatus(s.ingestDir(ref))
	if err != nil {
		return content.Status{}, fmt.Errorf("status of ref %q: %w", ref, err)
	}
	if st.Ref != ref {
		return content.Status{}, fmt.Errorf("status of ref %q: folder holds ref %q: %w", ref, st.Ref, errdefs.ErrNotFound)
	}
	return st, nil
}

// ListStatuses lists the ingests matching any of filters (fields "ref"
// and "expected"). Ingests that cannot be read, such as one being created
// or removed right now, are left out.
func (s *Store) ListStatuses(ctx context.Context, fs ...string) ([]content.Status, error) {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	root := filepath.Join(s.root, "ingest")
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	var out []content.Status
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		st, err := readStatus(filepath.Join(root, e.Name()))
		if err != nil {
			if !errors.Is(err, errdefs.ErrNotFound) {
				slog.Warn("content: skipping unreadable ingest", "ingest", e.Name(), "error", err)
			}
			continue
		}
		if filter.Match(content.AdaptStatus(st)) {
			out = append(out, st)
		}
	}
	return out, nil
}

// Abort removes the ingest named ref. A writer still holding it keeps its
// open file but can no longer commit.
func (s *Store) Abort(ctx context.Context, ref string) error {
	dir := s.ingestDir(ref)
	if _, err := os.Lstat(dir); err != nil {
		return fmt.Errorf("abort ref %q: %w", ref, ingestErr(dir, err))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("abort ref %q: %w", ref, err)
	}
	return nil
}
