// Package gc holds berth's garbage collector machinery that knows nothing
// of where objects are stored: the node graph, tri-colour marking from
// roots, the statistics of a run and the scheduler that batches runs.
// core/metadata builds the graph from its bbolt records and sweeps what
// Mark leaves unreached.
package gc

import (
	"fmt"
)

// ResourceType is the kind of object a Node stands for.
type ResourceType uint8

const (
	ResourceUnknown ResourceType = iota
	// ResourceContent is a blob; Key is its digest.
	ResourceContent
	// ResourceSnapshot is a snapshot; Key is "<snapshotter>/<key>".
	ResourceSnapshot
	// ResourceImage is an image record; Key is its name.
	ResourceImage
	// ResourceContainer is a container record; Key is its id.
	ResourceContainer
	// ResourceLease is a lease; Key is its id.
	ResourceLease
	// ResourceIngest is a content ingest; Key is its ref.
	ResourceIngest
)

func (t ResourceType) String() string {
	switch t {
	case ResourceContent:
		return "content"
	case ResourceSnapshot:
		return "snapshot"
	case ResourceImage:
		return "image"
	case ResourceContainer:
		return "container"
	case ResourceLease:
		return "lease"
	case ResourceIngest:
		return "ingest"
	}
	return fmt.Sprintf("resource(%d)", uint8(t))
}

// Node is one object in the reference graph.
type Node struct {
	Type      ResourceType
	Namespace string
	Key       string
	// Flat marks a visit that keeps the node but follows only its
	// structural references (a snapshot's parent, an image's target),
	// never its label references: what a containerd.io/gc.flat lease
	// holds. Mark reports reached nodes with Flat cleared, and a node
	// reached both ways is followed both ways.
	Flat bool
}

func (n Node) String() string {
	return fmt.Sprintf("%s %s/%s", n.Type, n.Namespace, n.Key)
}

// Unflat returns n with Flat cleared: the identity of the object.
func (n Node) Unflat() Node {
	n.Flat = false
	return n
}

// RefsFunc emits, through emit, the nodes n references. It is called once
// per distinct visit (node and Flat) during Mark.
type RefsFunc func(n Node, emit func(Node)) error

// Marked is the result of Mark: every visit made, flat or not.
type Marked map[Node]struct{}

// Has reports whether the object n stands for was reached, flat or not.
func (m Marked) Has(n Node) bool {
	n.Flat = false
	if _, ok := m[n]; ok {
		return true
	}
	n.Flat = true
	_, ok := m[n]
	return ok
}

// Objects counts the distinct objects reached.
func (m Marked) Objects() int {
	count := 0
	for n := range m {
		if !n.Flat {
			count++
		} else if _, full := m[n.Unflat()]; !full {
			count++
		}
	}
	return count
}

// Mark returns every node reachable from roots through refs. It is a
// depth-first tri-colour mark: memory grows with the reachable set only,
// and each visit is expanded once. sizeHint, when known, is about how many
// nodes the graph has, so the set is sized once instead of growing.
func Mark(roots []Node, refs RefsFunc, sizeHint int) (Marked, error) {
	seen := make(Marked, max(sizeHint, len(roots)))
	grey := make([]Node, 0, len(roots))
	push := func(n Node) {
		if _, ok := seen[n]; ok {
			return
		}
		seen[n] = struct{}{}
		grey = append(grey, n)
	}
	for _, r := range roots {
		push(r)
	}
	for len(grey) > 0 {
		n := grey[len(grey)-1]
		grey = grey[:len(grey)-1]
		if err := refs(n, push); err != nil {
			return nil, fmt.Errorf("references of %s: %w", n, err)
		}
	}
	return seen, nil
}
