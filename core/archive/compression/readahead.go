package compression

import (
	"io"
	"sync"
)

// readahead reads its source in a goroutine into a few large buffers, so
// that decompression (in that goroutine) overlaps with whatever the consumer
// does with the data, such as writing files. For gzip it gives the
// concurrency of an unpigz child without a process and two pipe copies.
type readahead struct {
	src    io.ReadCloser
	filled chan *chunk
	free   chan *chunk
	stop   chan struct{}
	wg     sync.WaitGroup
	cur    *chunk
	err    error
	closed bool
}

type chunk struct {
	buf []byte
	off int
	n   int
	err error
}

const (
	readaheadChunk  = 512 << 10
	readaheadChunks = 3
)

func newReadahead(src io.ReadCloser) *readahead {
	r := &readahead{
		src:    src,
		filled: make(chan *chunk, readaheadChunks),
		free:   make(chan *chunk, readaheadChunks),
		stop:   make(chan struct{}),
	}
	for range readaheadChunks {
		r.free <- &chunk{buf: make([]byte, readaheadChunk)}
	}
	r.wg.Add(1)
	go r.fill()
	return r
}

func (r *readahead) fill() {
	defer r.wg.Done()
	for {
		var c *chunk
		select {
		case c = <-r.free:
		case <-r.stop:
			return
		}
		c.off, c.n, c.err = 0, 0, nil
		// Fill the chunk; io.ReadFull would turn a decompressor's own
		// io.ErrUnexpectedEOF (a truncated stream) into a plain short read.
		for c.n < len(c.buf) && c.err == nil {
			var n int
			n, c.err = r.src.Read(c.buf[c.n:])
			c.n += n
		}
		r.filled <- c // never blocks: there are only readaheadChunks chunks
		if c.err != nil {
			return
		}
	}
}

func (r *readahead) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.cur == nil {
			r.cur = <-r.filled
		}
		c := r.cur
		if c.off < c.n {
			n := copy(p, c.buf[c.off:c.n])
			c.off += n
			return n, nil
		}
		if c.err != nil {
			r.err = c.err
			continue
		}
		r.cur = nil
		r.free <- c
	}
}

// Close stops reading ahead, waits for the goroutine to let go of the source
// and closes the decompressor.
func (r *readahead) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	close(r.stop)
	r.wg.Wait()
	if r.err == nil {
		r.err = io.ErrClosedPipe
	}
	return r.src.Close()
}
