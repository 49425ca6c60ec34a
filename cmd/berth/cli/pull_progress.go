package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	transfertypes "github.com/containerd/containerd/api/types/transfer"

	"github.com/berthd/berth/core/transfer"
)

// progressView shows a transfer's progress the way docker does: one line
// per layer. On a terminal the lines are redrawn in place with a bar,
// bytes and rate; elsewhere a plain line is printed each time a layer
// changes state.
type progressView struct {
	out  io.Writer
	tty  bool
	push bool

	mu     sync.Mutex
	rows   []*progressRow
	byName map[string]*progressRow
	drawn  int // lines drawn last time (terminal)
	last   time.Time
	frozen bool // the layer lines are final
}

type progressRow struct {
	id          string
	event       string
	done, total int64
	// since and from are where the current byte count started, for the
	// rate.
	since time.Time
	from  int64
}

// redrawEvery spaces terminal redraws.
const redrawEvery = 100 * time.Millisecond

func newProgressView(out io.Writer, tty, push bool) *progressView {
	return &progressView{out: out, tty: tty, push: push, byName: map[string]*progressRow{}}
}

// handle takes one event from berthd.
func (v *progressView) handle(p *transfertypes.Progress) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !strings.HasPrefix(p.Name, "layer-") {
		v.status(p)
		return
	}
	r, ok := v.byName[p.Name]
	if !ok {
		r = &progressRow{id: shortID(strings.TrimPrefix(p.Name, "layer-"))}
		v.byName[p.Name] = r
		v.rows = append(v.rows, r)
	}
	changed := r.event != p.Event
	if changed {
		r.since, r.from = time.Now(), p.Progress
	}
	r.event, r.done, r.total = p.Event, p.Progress, p.Total
	switch {
	case v.tty && (changed || time.Since(v.last) >= redrawEvery):
		v.redraw()
	case !v.tty && changed:
		fmt.Fprintf(v.out, "%s: %s\n", r.id, v.plain(r))
	}
}

// status prints events that are not about a layer.
func (v *progressView) status(p *transfertypes.Progress) {
	var line string
	switch p.Event {
	case transfer.EventResolving:
		line = "resolving " + p.Name
	case transfer.EventResolved:
		line = fmt.Sprintf("%s: resolved to %s", p.Name, p.GetDesc().GetDigest())
	case transfer.EventUnpacked:
		line = fmt.Sprintf("unpacked into %s: %d of %d layers extracted", p.Name, p.Progress, p.Total)
	default:
		return
	}
	if v.tty && len(v.rows) > 0 {
		// A status after the layers ends the display: draw them a last
		// time, then the line below them.
		v.redraw()
		v.frozen = true
	}
	fmt.Fprintln(v.out, line)
}

// finish draws the final state.
func (v *progressView) finish() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.tty {
		v.redraw()
	}
}

func (v *progressView) redraw() {
	if v.frozen {
		return
	}
	v.last = time.Now()
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\033[%dA", v.drawn)
	}
	for _, r := range v.rows {
		fmt.Fprintf(&b, "\033[2K%s: %s\n", r.id, v.fancy(r))
	}
	v.drawn = len(v.rows)
	io.WriteString(v.out, b.String())
}

// fancy is a terminal line: state, bar, bytes and rate while moving.
func (v *progressView) fancy(r *progressRow) string {
	switch r.event {
	case transfer.EventDownloading, transfer.EventUploading, transfer.EventExtracting, transfer.EventCompressing:
		return fmt.Sprintf("%-12s %s %8s/%-8s %s", v.verb(r.event), bar(r.done, r.total), humanSize(r.done), humanSize(r.total), rate(r))
	}
	return v.verb(r.event)
}

// plain is a line for a log: state and size.
func (v *progressView) plain(r *progressRow) string {
	switch r.event {
	case transfer.EventDownloading, transfer.EventUploading:
		return fmt.Sprintf("%s %s", strings.ToLower(v.verb(r.event)), humanSize(r.total))
	}
	return strings.ToLower(v.verb(r.event))
}

func (v *progressView) verb(event string) string {
	switch event {
	case transfer.EventWaiting:
		return "Waiting"
	case transfer.EventDownloading:
		return "Downloading"
	case transfer.EventUploading:
		return "Pushing"
	case transfer.EventCompressing:
		return "Compressing"
	case transfer.EventComplete:
		if v.push {
			return "Pushed"
		}
		return "Download complete"
	case transfer.EventExtracting:
		return "Extracting"
	case transfer.EventExtracted:
		return "Pull complete"
	}
	return event
}

const barWidth = 30

func bar(done, total int64) string {
	n := 0
	if total > 0 {
		n = int(min(done, total) * barWidth / total)
	}
	switch {
	case n >= barWidth:
		return "[" + strings.Repeat("=", barWidth) + "]"
	case n > 0:
		return "[" + strings.Repeat("=", n-1) + ">" + strings.Repeat(" ", barWidth-n) + "]"
	}
	return "[" + strings.Repeat(" ", barWidth) + "]"
}

func rate(r *progressRow) string {
	d := time.Since(r.since).Seconds()
	if d < 0.05 || r.done <= r.from {
		return ""
	}
	return humanSize(int64(float64(r.done-r.from)/d)) + "/s"
}
