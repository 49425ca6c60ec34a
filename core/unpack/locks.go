package unpack

import (
	"context"
	"fmt"
	"reflect"
	"sync"
)

// chainKey names one chain ID of one snapshotter in one namespace.
type chainKey struct {
	sn      any
	ns      string
	chainID string
}

// snapshotterIdentity is the snapshotter value itself when it can key a
// map (the usual pointer), else its name: two unpacks into the same
// snapshotter then share locks even through different Unpackers.
func snapshotterIdentity(j *job) any {
	if t := reflect.TypeOf(j.sn); t != nil && t.Comparable() {
		return j.sn
	}
	return "name:" + j.name
}

// keyedLocks is a mutex per key that waiters can give up on.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[chainKey]*keyedLock
}

type keyedLock struct {
	sem  chan struct{}
	refs int
}

// chainLocks serialises work on each chain ID across the process, so a
// layer shared by images unpacked at once is extracted once.
var chainLocks = &keyedLocks{locks: map[chainKey]*keyedLock{}}

// lock takes the lock of k, waiting until it is free or ctx ends.
func (l *keyedLocks) lock(ctx context.Context, k chainKey) (func(), error) {
	l.mu.Lock()
	e := l.locks[k]
	if e == nil {
		e = &keyedLock{sem: make(chan struct{}, 1)}
		l.locks[k] = e
	}
	e.refs++
	l.mu.Unlock()
	select {
	case e.sem <- struct{}{}:
		return func() {
			<-e.sem
			l.release(k, e)
		}, nil
	case <-ctx.Done():
		l.release(k, e)
		return nil, fmt.Errorf("waiting for another unpack of %s: %w", k.chainID, ctx.Err())
	}
}

func (l *keyedLocks) release(k chainKey, e *keyedLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.locks, k)
	}
}
