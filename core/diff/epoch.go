package diff

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// epochWriter rewrites the tar stream written to it with every time
// clamped to an epoch (SOURCE_DATE_EPOCH) and whiteouts dated at the Unix
// epoch, as containerd 2 writes reproducible layers. The rewrite runs in a
// goroutine reading through a pipe, so the layer is never held in memory.
type epochWriter struct {
	pw   *io.PipeWriter
	done chan error
}

func newEpochWriter(w io.Writer, epoch time.Time) *epochWriter {
	pr, pw := io.Pipe()
	e := &epochWriter{pw: pw, done: make(chan error, 1)}
	epoch = epoch.Truncate(time.Second)
	go func() {
		err := clampTar(pr, w, epoch)
		// A failed rewrite unblocks the producer with its error.
		pr.CloseWithError(err)
		e.done <- err
	}()
	return e
}

func (e *epochWriter) Write(p []byte) (int, error) { return e.pw.Write(p) }

// Close ends the stream and returns the rewrite's error.
func (e *epochWriter) Close() error {
	e.pw.Close()
	return <-e.done
}

func clampTar(r io.Reader, w io.Writer, epoch time.Time) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("source date epoch: read tar: %w", err)
		}
		clampHeader(hdr, epoch)
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("source date epoch: write %q: %w", hdr.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("source date epoch: copy %q: %w", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("source date epoch: finish tar: %w", err)
	}
	_, err := io.Copy(io.Discard, r)
	return err
}

func clampHeader(hdr *tar.Header, epoch time.Time) {
	if strings.HasPrefix(path.Base(hdr.Name), ".wh.") {
		hdr.ModTime = time.Unix(0, 0)
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		return
	}
	clamp := func(t time.Time) time.Time {
		if !t.IsZero() && t.After(epoch) {
			return epoch
		}
		return t
	}
	hdr.ModTime = clamp(hdr.ModTime)
	hdr.AccessTime = clamp(hdr.AccessTime)
	hdr.ChangeTime = clamp(hdr.ChangeTime)
}
