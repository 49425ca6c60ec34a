package metadata

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/leases"
)

// gcGraph is the reference graph of every record, built in one pass over
// the database so each record is decoded once.
//
// Roots: leases that have not expired (and, through them, their
// resources; a containerd.io/gc.flat lease holds them flat), images
// (unless their containerd.io/gc.expire label has passed), containers,
// blobs and snapshots labelled containerd.io/gc.root, and ingests whose
// expiry has not passed. Edges: an image's target, a container's
// snapshot and a snapshot's parent (structural, followed even from flat
// visits), and the containerd.io/gc.ref.content[.<name>] = <digest> and
// containerd.io/gc.ref.snapshot.<snapshotter>[.<name>|/<name>] = <key>
// labels of blobs, snapshots, images and containers.
type gcGraph struct {
	now   time.Time
	roots []gc.Node
	edges map[gc.Node]gcEdges
	// removable are the records a collection may delete: all but
	// containers, which only their owner removes.
	removable []gc.Node
}

type gcEdges struct {
	structural []gc.Node
	labels     []gc.Node
}

func newGCGraph(now time.Time) *gcGraph {
	return &gcGraph{now: now, edges: map[gc.Node]gcEdges{}}
}

func node(t gc.ResourceType, ns, key string) gc.Node {
	return gc.Node{Type: t, Namespace: ns, Key: key}
}

// scan adds every record of the database to the graph.
func (g *gcGraph) scan(tx *bolt.Tx) error {
	return eachNamespace(tx, func(ns string, nb *bolt.Bucket) error {
		g.scanLeases(ns, nb.Bucket(bucketLeases))
		g.scanRecords(ns, nb.Bucket(bucketImages), g.addImage)
		g.scanRecords(ns, nb.Bucket(bucketContainers), g.addContainer)
		g.scanRecords(ns, nb.Bucket(bucketContent), g.addBlob)
		g.scanRecords(ns, nb.Bucket(bucketIngests), g.addIngest)
		if sb := nb.Bucket(bucketSnapshots); sb != nil {
			sb.ForEachBucket(func(name []byte) error {
				g.scanRecords(ns, sb.Bucket(name), func(ns, key string, v []byte) {
					g.addSnapshot(ns, string(name), key, v)
				})
				return nil
			})
		}
		return nil
	})
}

func (g *gcGraph) scanRecords(ns string, b *bolt.Bucket, add func(ns, key string, v []byte)) {
	if b == nil {
		return
	}
	b.ForEach(func(k, v []byte) error {
		if v != nil {
			add(ns, string(k), v)
		}
		return nil
	})
}

// keepCorrupt makes a record that cannot be decoded a root: what it
// references is unknown, but the record itself is not thrown away.
func (g *gcGraph) keepCorrupt(n gc.Node, err error) {
	slog.Warn("garbage collection: keeping unreadable record", "record", n.String(), "error", err)
	g.roots = append(g.roots, n)
}

func (g *gcGraph) addImage(ns, name string, v []byte) {
	n := node(gc.ResourceImage, ns, name)
	g.removable = append(g.removable, n)
	img, err := decodeImage(name, v)
	if err != nil {
		g.keepCorrupt(n, err)
		return
	}
	refs, _ := labelRefs(ns, img.Labels)
	g.edges[n] = gcEdges{structural: []gc.Node{node(gc.ResourceContent, ns, img.Target.Digest.String())}, labels: refs}
	if !g.expired(img.Labels[labelGCExpire]) {
		g.roots = append(g.roots, n)
	}
}

func (g *gcGraph) addContainer(ns, id string, v []byte) {
	n := node(gc.ResourceContainer, ns, id)
	c, err := decodeContainer(id, v)
	if err != nil {
		g.keepCorrupt(n, err)
		return
	}
	refs, _ := labelRefs(ns, c.Labels)
	var structural []gc.Node
	if c.Snapshotter != "" && c.SnapshotKey != "" {
		structural = append(structural, node(gc.ResourceSnapshot, ns, c.Snapshotter+"/"+c.SnapshotKey))
	}
	g.edges[n] = gcEdges{structural: structural, labels: refs}
	g.roots = append(g.roots, n)
}

func (g *gcGraph) addBlob(ns, dgst string, v []byte) {
	n := node(gc.ResourceContent, ns, dgst)
	g.removable = append(g.removable, n)
	info, err := decodeBlob(digest.Digest(dgst), v)
	if err != nil {
		g.keepCorrupt(n, err)
		return
	}
	refs, root := labelRefs(ns, info.Labels)
	if len(refs) > 0 {
		g.edges[n] = gcEdges{labels: refs}
	}
	if root {
		g.roots = append(g.roots, n)
	}
}

func (g *gcGraph) addIngest(ns, ref string, v []byte) {
	n := node(gc.ResourceIngest, ns, ref)
	g.removable = append(g.removable, n)
	rec, err := decodeIngest(ref, v)
	if err != nil {
		g.keepCorrupt(n, err)
		return
	}
	if !rec.expire.IsZero() && rec.expire.After(g.now) {
		g.roots = append(g.roots, n)
	}
}

func (g *gcGraph) addSnapshot(ns, snapshotter, key string, v []byte) {
	n := node(gc.ResourceSnapshot, ns, snapshotter+"/"+key)
	g.removable = append(g.removable, n)
	rec, err := decodeSnapshot(key, v)
	if err != nil {
		g.keepCorrupt(n, err)
		return
	}
	refs, root := labelRefs(ns, rec.labels)
	var structural []gc.Node
	if rec.parent != "" {
		structural = []gc.Node{node(gc.ResourceSnapshot, ns, snapshotter+"/"+rec.parent)}
	}
	g.edges[n] = gcEdges{structural: structural, labels: refs}
	if root {
		g.roots = append(g.roots, n)
	}
}

// scanLeases adds the leases of ns; live ones are roots with their
// resources, expired ones are left to be removed.
func (g *gcGraph) scanLeases(ns string, lb *bolt.Bucket) {
	if lb == nil {
		return
	}
	lb.ForEachBucket(func(k []byte) error {
		n := node(gc.ResourceLease, ns, string(k))
		g.removable = append(g.removable, n)
		b := lb.Bucket(k)
		l, err := readLease(string(k), b)
		if err != nil {
			g.keepCorrupt(n, err)
			return nil
		}
		if g.expired(l.Labels[leases.LabelExpire]) {
			return nil
		}
		g.roots = append(g.roots, n)
		_, flat := l.Labels[leases.LabelFlat]
		eachResource(b, func(typ, key string) {
			if r, ok := resourceNode(ns, typ, key); ok {
				r.Flat = flat
				g.roots = append(g.roots, r)
			}
		})
		return nil
	})
}

// resourceNode turns a lease resource into the node it holds.
func resourceNode(ns, typ, key string) (gc.Node, bool) {
	switch {
	case typ == resourceContent:
		return node(gc.ResourceContent, ns, key), true
	case typ == resourceIngests:
		return node(gc.ResourceIngest, ns, key), true
	case strings.HasPrefix(typ, resourceSnapshots+"/"):
		return node(gc.ResourceSnapshot, ns, strings.TrimPrefix(typ, resourceSnapshots+"/")+"/"+key), true
	}
	return gc.Node{}, false
}

// expired reports whether an RFC 3339 expiry label value has passed. An
// unreadable value does not expire anything.
func (g *gcGraph) expired(v string) bool {
	if v == "" {
		return false
	}
	t, err := time.Parse(time.RFC3339, v)
	return err == nil && g.now.After(t)
}

// labelRefs returns the references a set of labels makes and whether it
// marks its object a root.
func labelRefs(ns string, labels map[string]string) (refs []gc.Node, root bool) {
	for k, v := range labels {
		switch {
		case k == labelGCRoot:
			root = true
		case isContentRef(k):
			if digest.Digest(v).Validate() == nil {
				refs = append(refs, node(gc.ResourceContent, ns, v))
			}
		case strings.HasPrefix(k, labelGCRefSnapshot):
			name := strings.TrimPrefix(k, labelGCRefSnapshot)
			if i := strings.IndexAny(name, "./"); i >= 0 {
				name = name[:i]
			}
			if name != "" && v != "" {
				refs = append(refs, node(gc.ResourceSnapshot, ns, name+"/"+v))
			}
		}
	}
	return refs, root
}

func isContentRef(k string) bool {
	rest, ok := strings.CutPrefix(k, labelGCRefContent)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '/')
}

// refs is the gc.RefsFunc of the graph.
func (g *gcGraph) refs(n gc.Node, emit func(gc.Node)) error {
	e := g.edges[n.Unflat()]
	for _, r := range e.structural {
		r.Flat = n.Flat
		emit(r)
	}
	if !n.Flat {
		for _, r := range e.labels {
			emit(r)
		}
	}
	return nil
}

// removeRecord deletes the record n stands for.
func removeRecord(tx *bolt.Tx, n gc.Node) error {
	nb := namespaceBucket(tx, n.Namespace)
	if nb == nil {
		return nil
	}
	switch n.Type {
	case gc.ResourceContent:
		return deleteKey(nb.Bucket(bucketContent), n.Key)
	case gc.ResourceIngest:
		return deleteKey(nb.Bucket(bucketIngests), n.Key)
	case gc.ResourceImage:
		return deleteKey(nb.Bucket(bucketImages), n.Key)
	case gc.ResourceLease:
		if lb := nb.Bucket(bucketLeases); lb != nil && lb.Bucket([]byte(n.Key)) != nil {
			return lb.DeleteBucket([]byte(n.Key))
		}
	case gc.ResourceSnapshot:
		name, key, _ := strings.Cut(n.Key, "/")
		b := snapshotBucket(tx, n.Namespace, name)
		rec, err := getSnapshot(b, key)
		if err != nil {
			return deleteKey(b, key) // unreadable: drop it all the same
		}
		return deleteSnapshotRecord(b, key, rec)
	default:
		return fmt.Errorf("cannot remove %s", n)
	}
	return nil
}

func deleteKey(b *bolt.Bucket, key string) error {
	if b == nil {
		return nil
	}
	return b.Delete([]byte(key))
}
