package gc

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func content(key string) Node { return Node{Type: ResourceContent, Namespace: "ns", Key: key} }
func snap(key string) Node {
	return Node{Type: ResourceSnapshot, Namespace: "ns", Key: "native/" + key}
}

// graph is a test graph: structural references are followed on flat
// visits too, label references only on full visits.
type graph struct {
	structural map[Node][]Node
	labels     map[Node][]Node
}

func (g graph) refs(n Node, emit func(Node)) error {
	for _, r := range g.structural[n.Unflat()] {
		r.Flat = n.Flat
		emit(r)
	}
	if !n.Flat {
		for _, r := range g.labels[n.Unflat()] {
			emit(r)
		}
	}
	return nil
}

// keys lists the keys of the objects reached, each once.
func keys(m Marked) []string {
	set := map[string]bool{}
	for n := range m {
		if !m.Has(n) {
			panic("Has disagrees with the set")
		}
		set[n.Key] = true
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) != m.Objects() {
		panic(fmt.Sprintf("Objects() = %d for %q", m.Objects(), out))
	}
	return out
}

func TestMarkFollowsReferencesAndCycles(t *testing.T) {
	g := graph{
		structural: map[Node][]Node{snap("child"): {snap("parent")}},
		labels: map[Node][]Node{
			content("index"):    {content("manifest")},
			content("manifest"): {content("config"), content("layer"), snap("child")},
			content("config"):   {content("index")}, // a cycle
		},
	}
	got, err := Mark([]Node{content("index")}, g.refs, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"config", "index", "layer", "manifest", "native/child", "native/parent"}
	if k := keys(got); !reflect.DeepEqual(k, want) {
		t.Errorf("marked %q, want %q", k, want)
	}
}

func TestMarkFlatVisits(t *testing.T) {
	g := graph{
		structural: map[Node][]Node{snap("child"): {snap("parent")}},
		labels: map[Node][]Node{
			snap("child"):       {content("by-label")},
			content("manifest"): {content("layer")},
		},
	}
	flat := func(n Node) Node { n.Flat = true; return n }
	got, _ := Mark([]Node{flat(snap("child")), flat(content("manifest"))}, g.refs, 16)
	if k := keys(got); !reflect.DeepEqual(k, []string{"manifest", "native/child", "native/parent"}) {
		t.Errorf("flat roots marked %q: labels must not be followed, parents must", k)
	}
	// The same node reached flat and in full is followed in full.
	got, _ = Mark([]Node{flat(content("manifest")), content("manifest")}, g.refs, 0)
	if k := keys(got); !reflect.DeepEqual(k, []string{"layer", "manifest"}) {
		t.Errorf("flat and full root marked %q", k)
	}
}

func TestMarkReportsRefsError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Mark([]Node{content("a")}, func(Node, func(Node)) error { return boom }, 0)
	if !errors.Is(err, boom) {
		t.Errorf("Mark error %v", err)
	}
}

// counter is a collector that counts its runs and can be held.
type counter struct {
	runs    atomic.Int32
	started chan struct{}
	release chan struct{}
}

func (c *counter) collect(ctx context.Context) (Stats, error) {
	n := c.runs.Add(1)
	if c.started != nil {
		c.started <- struct{}{}
	}
	if c.release != nil {
		<-c.release
	}
	return Stats{Marked: int(n)}, nil
}

func TestTriggersAreBatchedIntoOneRun(t *testing.T) {
	c := &counter{}
	s := NewScheduler(c.collect, Config{Delay: time.Hour})
	for range 100 {
		s.Trigger()
	}
	st, err := s.Run(context.Background())
	if err != nil || st.Marked != 1 {
		t.Fatalf("Run: %+v, %v", st, err)
	}
	s.Close()
	// The pending trigger was served by the run: with an hour of delay
	// nothing else could have run.
	if n := c.runs.Load(); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
	if last, _ := s.Last(); last.Marked != 1 {
		t.Errorf("Last %+v", last)
	}
}

func TestTriggerRunsAfterDelay(t *testing.T) {
	c := &counter{started: make(chan struct{}, 1)}
	s := NewScheduler(c.collect, Config{Delay: -1})
	defer s.Close()
	s.Trigger()
	<-c.started
}

func TestRunWaitsForARunStartedAfterTheCall(t *testing.T) {
	c := &counter{started: make(chan struct{}), release: make(chan struct{})}
	s := NewScheduler(c.collect, Config{Delay: time.Hour})
	defer s.Close()
	var wg sync.WaitGroup
	var first Stats
	wg.Go(func() { first, _ = s.Run(context.Background()) })
	<-c.started // run 1 is under way
	var second Stats
	wg.Go(func() { second, _ = s.Run(context.Background()) })
	c.release <- struct{}{} // finish run 1
	<-c.started             // run 2 starts for the second caller
	c.release <- struct{}{}
	wg.Wait()
	if first.Marked != 1 || second.Marked != 2 {
		t.Errorf("first caller got run %d, second run %d; want 1 and 2", first.Marked, second.Marked)
	}
}

func TestRunAfterCloseAndCancelledRun(t *testing.T) {
	c := &counter{started: make(chan struct{}), release: make(chan struct{})}
	s := NewScheduler(c.collect, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := s.Run(ctx)
		done <- err
	}()
	<-c.started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Run: %v", err)
	}
	c.release <- struct{}{}
	s.Close()
	s.Close()
	if _, err := s.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.Delay != DefaultDelay || c.PauseThreshold != DefaultPauseThreshold {
		t.Errorf("defaults %+v", c)
	}
	c = Config{Delay: -5, PauseThreshold: 3}.withDefaults()
	if c.Delay != 0 || c.PauseThreshold != maxPauseThreshold {
		t.Errorf("bounded %+v", c)
	}
}
