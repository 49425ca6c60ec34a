package remotes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/reference"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// LabelDistributionSource is the prefix of the blob label that records
// which repositories of a registry hold the blob
// ("containerd.io/distribution.source.docker.io" = "library/busybox"), so
// a later push to the same registry can mount instead of upload.
const LabelDistributionSource = "containerd.io/distribution.source."

// maxAttempts bounds the transfers of one blob (the first and the retries
// that resume it).
const maxAttempts = 5

// ProgressFunc receives the bytes of desc held so far; it is called from
// the transferring goroutine and must be quick.
type ProgressFunc func(desc ocispec.Descriptor, done int64)

// IngestOptions change how Ingest stores a blob.
type IngestOptions struct {
	// Progress is told the offset after every chunk written.
	Progress ProgressFunc
	// Labels are set on the committed blob beside the
	// distribution-source label.
	Labels map[string]string
	// Started, when set, is called once the blob is being taken care of:
	// it holds a download slot, another fetch of it is under way, or it
	// turned out to be stored already (or the ingest failed first).
	Started func()
}

// Fetcher reads the content of one repository from its pull endpoints.
type Fetcher struct {
	r    *Resolver
	name reference.Reference
	eps  []*endpoint
}

// Fetcher returns a Fetcher for the repository of ref.
func (r *Resolver) Fetcher(ref string) (*Fetcher, error) {
	name, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	eps, err := r.endpoints(name.Domain, hosts.CapPull)
	if err != nil {
		return nil, err
	}
	return &Fetcher{r: r, name: name, eps: eps}, nil
}

// Fetch opens the content of desc from the first endpoint that serves it.
// Manifests and indexes come from the manifests API and are refused over
// MaxManifestSize; anything else is a blob. The caller verifies the
// digest of what it reads (Ingest does).
func (f *Fetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := validateDescriptor(desc); err != nil {
		return nil, err
	}
	if isManifest(desc.MediaType) || isIndex(desc.MediaType) {
		return f.openManifest(ctx, desc)
	}
	return f.openBlob(ctx, desc, 0)
}

func (f *Fetcher) openManifest(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := checkManifestSize(desc); err != nil {
		return nil, err
	}
	var errs []error
	for _, ep := range f.eps {
		rc, err := ep.repository(ctx, f.name.Path).Manifests().Fetch(ctx, desc)
		if err == nil {
			return rc, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, classify(ep, err))
	}
	return nil, fmt.Errorf("fetch manifest %s of %s: %w", desc.Digest, f.name.Name(), summarize(errs))
}

// readManifest fetches a manifest or index into memory and verifies it.
func (f *Fetcher) readManifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	rc, err := f.openManifest(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", desc.Digest, err)
	}
	if err := verifyBytes(desc, data); err != nil {
		return nil, err
	}
	return data, nil
}

func verifyBytes(desc ocispec.Descriptor, data []byte) error {
	if int64(len(data)) != desc.Size {
		return fmt.Errorf("%s: got %d bytes, want %d: %w", desc.Digest, len(data), desc.Size, errdefs.ErrFailedPrecondition)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return fmt.Errorf("%s: content has digest %s: %w", desc.Digest, got, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// openBlob opens a blob at offset on the first endpoint that serves it.
func (f *Fetcher) openBlob(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	var errs []error
	for _, ep := range f.eps {
		rc, err := ep.openBlob(ctx, f.name.Path, desc, offset)
		if err == nil {
			return rc, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		f.r.log.DebugContext(ctx, "blob fetch failed on endpoint", "digest", desc.Digest, "endpoint", ep.URL(), "error", err)
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("fetch %s from %s: %w", desc.Digest, f.name.Name(), summarize(errs))
}

// errRangeNotSatisfiable means the server refused the resume offset.
var errRangeNotSatisfiable = errors.New("range not satisfiable")

// openBlob issues the blob GET itself rather than through oras, so that a
// resumed transfer starts with one ranged request (oras' seekable reader
// would first open the whole blob).
func (e *endpoint) openBlob(ctx context.Context, repo string, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	ctx = orasauth.AppendRepositoryScope(ctx, registry.Reference{Registry: e.Host, Repository: repo}, orasauth.ActionPull)
	url := e.scheme(ctx) + "://" + e.Host + "/v2/" + repo + "/blobs/" + desc.Digest.String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := e.Do(req)
	if err != nil {
		return nil, classify(e, err)
	}
	body, err := e.checkBlobResponse(resp, desc, offset)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	return body, nil
}

func (e *endpoint) checkBlobResponse(resp *http.Response, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	if d := resp.Header.Get("Docker-Content-Digest"); d != "" && d != desc.Digest.String() && resp.StatusCode/100 == 2 {
		return nil, fmt.Errorf("registry %s: served %s for blob %s: %w", e.Host, d, desc.Digest, errdefs.ErrFailedPrecondition)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
			return nil, fmt.Errorf("registry %s: blob %s is %d bytes, want %d: %w", e.Host, desc.Digest, resp.ContentLength, desc.Size, errdefs.ErrFailedPrecondition)
		}
		// The server ignored the Range header: skip to the offset.
		if offset > 0 {
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				return nil, fmt.Errorf("registry %s: blob %s: skip to offset %d: %w", e.Host, desc.Digest, offset, err)
			}
		}
		return resp.Body, nil
	case http.StatusPartialContent:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != offset {
			return nil, fmt.Errorf("registry %s: blob %s: Content-Range %q does not start at %d: %w",
				e.Host, desc.Digest, resp.Header.Get("Content-Range"), offset, errdefs.ErrFailedPrecondition)
		}
		return resp.Body, nil
	case http.StatusRequestedRangeNotSatisfiable:
		return nil, fmt.Errorf("registry %s: blob %s at offset %d: %w", e.Host, desc.Digest, offset, errRangeNotSatisfiable)
	}
	return nil, classify(e, errorResponse(resp))
}

// contentRangeStart parses "bytes <start>-<end>/<total>".
func contentRangeStart(v string) (int64, bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(start, 10, 64)
	return n, err == nil
}

// errorResponse reads a registry error body (bounded) into the error type
// oras uses, so classify treats both alike.
func errorResponse(resp *http.Response) error {
	er := &errcode.ErrorResponse{Method: resp.Request.Method, URL: resp.Request.URL, StatusCode: resp.StatusCode}
	var body struct {
		Errors errcode.Errors `json:"errors"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	if json.Unmarshal(data, &body) == nil {
		er.Errors = body.Errors
	}
	return er
}

// Ingest stores desc in store unless it is there: the blob is fetched from
// the first serving endpoint, resumed with a Range request from the
// ingest's offset when a transfer is cut, retried with backoff on
// transient errors, verified against its digest before commit, and
// committed with the distribution-source label. Concurrent Ingests of one
// digest in this process fetch it once.
func (f *Fetcher) Ingest(ctx context.Context, store content.Ingester, desc ocispec.Descriptor, opts IngestOptions) error {
	if err := validateDescriptor(desc); err != nil {
		return err
	}
	if opts.Started != nil {
		opts.Started = onceFunc(opts.Started)
		defer opts.Started()
	}
	ran, err := collapse(ctx, desc.Digest, func() error { return f.ingest(ctx, store, desc, opts) }, opts.started)
	if ran || err != nil {
		return err
	}
	// Another fetch of this digest ended; in a shared store the writer now
	// reports that the blob exists.
	return f.ingest(ctx, store, desc, opts)
}

func (o IngestOptions) started() {
	if o.Started != nil {
		o.Started()
	}
}

func onceFunc(fn func()) func() {
	var once sync.Once
	return func() { once.Do(fn) }
}

func (f *Fetcher) ingest(ctx context.Context, store content.Ingester, desc ocispec.Descriptor, opts IngestOptions) error {
	ref := refKey(desc)
	w, err := content.OpenWriter(ctx, store, content.WithRef(ref), content.WithDescriptor(desc))
	if errdefs.IsAlreadyExists(err) {
		f.addSource(ctx, store, desc)
		opts.Progress.report(desc, desc.Size)
		return nil
	}
	if err != nil {
		return fmt.Errorf("open ingest %s: %w", ref, err)
	}
	if err := acquire(ctx, f.r.downloads); err != nil {
		w.Close()
		return err
	}
	opts.started()
	err = f.download(ctx, w, desc, f.labels(opts.Labels), opts.Progress)
	release(f.r.downloads)
	w.Close()
	if errors.Is(err, errdefs.ErrFailedPrecondition) {
		// Leave no partial data behind that a later pull would resume from.
		if im, ok := store.(content.IngestManager); ok {
			if aerr := im.Abort(context.WithoutCancel(ctx), ref); aerr != nil && !errdefs.IsNotFound(aerr) {
				f.r.log.DebugContext(ctx, "abort ingest", "ref", ref, "error", aerr)
			}
		}
	}
	return err
}

// download moves desc into w and commits it, resuming and retrying.
func (f *Fetcher) download(ctx context.Context, w content.Writer, desc ocispec.Descriptor, labels map[string]string, progress ProgressFunc) error {
	restarted := false
	for attempt := 1; ; attempt++ {
		offset, err := ingestOffset(w, desc)
		if err != nil {
			return err
		}
		resumed := offset > 0
		if offset < desc.Size {
			err = f.copyFrom(ctx, w, desc, offset, progress)
		}
		if err == nil {
			err = verifyAndCommit(ctx, w, desc, labels)
			if err != nil && resumed && !restarted && errors.Is(err, errdefs.ErrFailedPrecondition) {
				// The bytes kept from an earlier transfer may be the bad
				// ones: start over once.
				restarted = true
				continue
			}
			return err
		}
		if errors.Is(err, errRangeNotSatisfiable) {
			if terr := w.Truncate(0); terr != nil {
				return fmt.Errorf("%w; reset ingest: %w", err, terr)
			}
		} else if !isTransient(err) || attempt >= maxAttempts || ctx.Err() != nil {
			return err
		}
		f.r.log.DebugContext(ctx, "blob transfer failed, retrying", "digest", desc.Digest, "attempt", attempt, "error", err)
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
}

// ingestOffset is where the ingest stands; an ingest longer than the blob
// is reset.
func ingestOffset(w content.Writer, desc ocispec.Descriptor) (int64, error) {
	st, err := w.Status()
	if err != nil {
		return 0, fmt.Errorf("ingest status of %s: %w", desc.Digest, err)
	}
	if st.Offset > desc.Size {
		if err := w.Truncate(0); err != nil {
			return 0, fmt.Errorf("reset ingest of %s: %w", desc.Digest, err)
		}
		return 0, nil
	}
	return st.Offset, nil
}

// copyFrom transfers the blob from offset to its end into w.
func (f *Fetcher) copyFrom(ctx context.Context, w content.Writer, desc ocispec.Descriptor, offset int64, progress ProgressFunc) error {
	rc, err := f.openBlob(ctx, desc, offset)
	if err != nil {
		return err
	}
	defer rc.Close()
	want := desc.Size - offset
	pw := &progressWriter{w: w, desc: desc, done: offset, fn: progress}
	bp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(pw, io.LimitReader(rc, want), *bp)
	copyBufs.Put(bp)
	if err == nil && n < want {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("fetch %s: transfer stopped at byte %d of %d: %w", desc.Digest, offset+n, desc.Size, err)
	}
	return nil
}

// verifyAndCommit checks the digest of what was written before making it
// visible; a mismatch empties the ingest so nothing bad is kept.
func verifyAndCommit(ctx context.Context, w content.Writer, desc ocispec.Descriptor, labels map[string]string) error {
	if got := w.Digest(); got.Algorithm() == desc.Digest.Algorithm() && got != desc.Digest {
		terr := w.Truncate(0)
		return errors.Join(fmt.Errorf("blob %s: fetched content has digest %s: %w", desc.Digest, got, errdefs.ErrFailedPrecondition), terr)
	}
	err := w.Commit(ctx, desc.Size, desc.Digest, content.WithLabels(labels))
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("commit blob %s: %w", desc.Digest, err)
	}
	return nil
}

// labels are the commit labels: the caller's plus the distribution source.
func (f *Fetcher) labels(extra map[string]string) map[string]string {
	out := make(map[string]string, len(extra)+1)
	for k, v := range extra {
		out[k] = v
	}
	out[LabelDistributionSource+f.name.Domain] = f.name.Path
	return out
}

// addSource records this repository in the distribution-source label of a
// blob already in the store, when the store can update labels.
func (f *Fetcher) addSource(ctx context.Context, store content.Ingester, desc ocispec.Descriptor) {
	m, ok := store.(content.Manager)
	if !ok {
		return
	}
	info, err := m.Info(ctx, desc.Digest)
	if err != nil {
		return
	}
	key := LabelDistributionSource + f.name.Domain
	repos := splitList(info.Labels[key])
	for _, r := range repos {
		if r == f.name.Path {
			return
		}
	}
	value := strings.Join(append(repos, f.name.Path), ",")
	upd := content.Info{Digest: desc.Digest, Labels: map[string]string{key: value}}
	if _, err := m.Update(ctx, upd, "labels."+key); err != nil {
		f.r.log.DebugContext(ctx, "update distribution source label", "digest", desc.Digest, "error", err)
	}
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// isTransient reports errors worth another attempt: broken transfers and
// unavailable servers, not missing content, auth or verification failures.
func isTransient(err error) bool {
	return isNetworkError(err) || errdefs.IsUnavailable(err)
}

// backoff grows from 100ms to 2s with ±25% jitter.
func backoff(attempt int) time.Duration {
	d := min(100*time.Millisecond<<min(attempt-1, 5), 2*time.Second)
	return d*3/4 + rand.N(d/2)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func release(sem chan struct{}) { <-sem }

var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, 256<<10)
	return &b
}}

// progressWriter reports the running offset after each write.
type progressWriter struct {
	w    io.Writer
	desc ocispec.Descriptor
	done int64
	fn   ProgressFunc
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.fn.report(p.desc, p.done)
	return n, err
}

func (fn ProgressFunc) report(desc ocispec.Descriptor, done int64) {
	if fn != nil {
		fn(desc, done)
	}
}

// writeBytes stores in-memory content (a fetched manifest) with labels. It
// reports whether the store had the blob already, in which case the labels
// were not applied.
func writeBytes(ctx context.Context, store content.Ingester, desc ocispec.Descriptor, data []byte, labels map[string]string) (existed bool, err error) {
	ref := refKey(desc)
	w, err := content.OpenWriter(ctx, store, content.WithRef(ref), content.WithDescriptor(desc))
	if errdefs.IsAlreadyExists(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("open ingest %s: %w", ref, err)
	}
	defer w.Close()
	if err := w.Truncate(0); err != nil {
		return false, fmt.Errorf("reset ingest %s: %w", ref, err)
	}
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		return false, fmt.Errorf("write ingest %s: %w", ref, err)
	}
	if got := w.Digest(); got.Algorithm() == desc.Digest.Algorithm() && got != desc.Digest {
		return false, verifyAndCommit(ctx, w, desc, labels)
	}
	err = w.Commit(ctx, desc.Size, desc.Digest, content.WithLabels(labels))
	if errdefs.IsAlreadyExists(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("commit blob %s: %w", desc.Digest, err)
	}
	return false, nil
}
