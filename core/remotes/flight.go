package remotes

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
)

// flight is one fetch of a digest in progress.
type flight struct {
	done chan struct{}
}

// flights collapses concurrent fetches of the same digest in this process:
// the first caller fetches, later ones wait for it to finish and then look
// in their own store, where they find the blob when they share the store
// (or fetch it themselves when they do not). Waiting callers never inherit
// the first caller's error or cancellation.
var flights = struct {
	mu sync.Mutex
	m  map[digest.Digest]*flight
}{m: map[digest.Digest]*flight{}}

// collapse runs fn unless another collapse for dgst is running, in which
// case it waits for that one (calling joined, when set, first). It reports
// whether fn ran, and fn's error.
func collapse(ctx context.Context, dgst digest.Digest, fn func() error, joined ...func()) (ran bool, err error) {
	flights.mu.Lock()
	if fl, ok := flights.m[dgst]; ok {
		flights.mu.Unlock()
		for _, j := range joined {
			j()
		}
		select {
		case <-fl.done:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	fl := &flight{done: make(chan struct{})}
	flights.m[dgst] = fl
	flights.mu.Unlock()
	defer func() {
		flights.mu.Lock()
		delete(flights.m, dgst)
		flights.mu.Unlock()
		close(fl.done)
	}()
	return true, fn()
}
