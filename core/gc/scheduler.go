package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// Defaults of Config.
const (
	DefaultDelay          = 50 * time.Millisecond
	DefaultPauseThreshold = 0.02
	maxPauseThreshold     = 0.5
	// maxSpacing caps the wait the pause threshold imposes, so a slow run
	// on a huge database does not postpone the next one for long.
	maxSpacing = time.Minute
)

// ErrClosed is returned by Run once the scheduler is closed.
var ErrClosed = fmt.Errorf("garbage collection scheduler is closed: %w", errdefs.ErrUnavailable)

// Config tunes when triggered collections run.
type Config struct {
	// Delay is how long a triggered run waits, so that a burst of
	// deletions (removing many images) is collected once. Zero means
	// DefaultDelay; negative means no wait.
	Delay time.Duration
	// PauseThreshold bounds the share of time collections may hold writers
	// off: after runs that paused writers for p on average, a triggered
	// run waits at least p/PauseThreshold after the previous one. Zero
	// means DefaultPauseThreshold; values above 0.5 are taken as 0.5.
	PauseThreshold float64
}

func (c Config) withDefaults() Config {
	switch {
	case c.Delay == 0:
		c.Delay = DefaultDelay
	case c.Delay < 0:
		c.Delay = 0
	}
	switch {
	case c.PauseThreshold <= 0:
		c.PauseThreshold = DefaultPauseThreshold
	case c.PauseThreshold > maxPauseThreshold:
		c.PauseThreshold = maxPauseThreshold
	}
	return c
}

// CollectFunc runs one collection.
type CollectFunc func(ctx context.Context) (Stats, error)

type result struct {
	stats Stats
	err   error
}

// Scheduler runs collections one at a time: after triggers, batched by a
// delay and spaced by the pause threshold, and on demand for callers that
// wait for the result.
type Scheduler struct {
	collect CollectFunc
	cfg     Config

	trigger chan struct{}
	waiters chan chan result
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once

	mu   sync.Mutex
	last result
}

// NewScheduler starts a scheduler calling collect.
func NewScheduler(collect CollectFunc, cfg Config) *Scheduler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{
		collect: collect,
		cfg:     cfg.withDefaults(),
		trigger: make(chan struct{}, 1),
		waiters: make(chan chan result),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go s.loop()
	return s
}

// Trigger asks for a run: it starts after the configured delay, or later
// when the pause threshold asks for more spacing. Triggers before the run
// starts are served by it. Trigger never blocks.
func (s *Scheduler) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default: // one is already pending
	}
}

// Run asks for a run now, without delay or spacing, and returns the result
// of a run that started after the call. If ctx ends first, Run returns its
// error; the run still happens.
func (s *Scheduler) Run(ctx context.Context) (Stats, error) {
	res := make(chan result, 1)
	select {
	case s.waiters <- res:
	case <-s.done:
		return Stats{}, ErrClosed
	case <-ctx.Done():
		return Stats{}, ctx.Err()
	}
	select {
	case r := <-res:
		return r.stats, r.err
	case <-ctx.Done():
		return Stats{}, ctx.Err()
	}
}

// Last returns the result of the most recent run.
func (s *Scheduler) Last() (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.stats, s.last.err
}

// Close stops the scheduler, cancelling a run in progress and waiting for
// it to return. Callers blocked in Run get ErrClosed.
func (s *Scheduler) Close() {
	s.once.Do(s.cancel)
	<-s.done
}

// loop owns the timer and the waiting callers; only it calls collect, so
// runs never overlap.
func (s *Scheduler) loop() {
	defer close(s.done)
	var (
		timer     = time.NewTimer(time.Hour)
		pending   bool
		due       bool
		waiting   []chan result
		avgPause  time.Duration
		nextStart time.Time
	)
	timer.Stop()
	for {
		select {
		case <-s.ctx.Done():
			timer.Stop()
			for _, w := range waiting {
				w <- result{err: ErrClosed}
			}
			return
		case <-s.trigger:
			if !pending {
				pending = true
				timer.Reset(s.wait(nextStart))
			}
		case w := <-s.waiters:
			waiting = append(waiting, w)
		case <-timer.C:
			due = true
		}
		if len(waiting) == 0 && !due {
			continue
		}
		timer.Stop()
		batch := waiting
		waiting, pending, due = nil, false, false
		r := s.runOnce()
		for _, w := range batch {
			w <- r
		}
		avgPause = (4*avgPause + r.stats.Pause) / 5
		nextStart = time.Now().Add(min(time.Duration(float64(avgPause)/s.cfg.PauseThreshold), maxSpacing))
	}
}

// wait is how long a triggered run waits from now.
func (s *Scheduler) wait(nextStart time.Time) time.Duration {
	return max(s.cfg.Delay, time.Until(nextStart))
}

func (s *Scheduler) runOnce() result {
	stats, err := s.collect(s.ctx)
	r := result{stats: stats, err: err}
	s.mu.Lock()
	s.last = r
	s.mu.Unlock()
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		slog.Warn("garbage collection failed", "error", err)
	case stats.Removed():
		slog.Debug("garbage collected", "records", len(stats.Records), "blobs", len(stats.Blobs),
			"ingests", len(stats.Ingests), "dropped", len(stats.Dropped), "reclaimed", stats.Reclaimed,
			"pause", stats.Pause, "elapsed", stats.Elapsed)
	}
	return r
}
