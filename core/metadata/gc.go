package metadata

import (
	"bytes"
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

// gcView is what the collector reads from a record: the references its
// labels make, whether it is a root, its expiry label, and the structural
// references of its kind.
type gcView struct {
	refs       []gc.Node
	structural []gc.Node
	root       bool
	expire     string
}

// readLabels scans an encoded labels field, turning into strings only the
// labels the collector reads.
func (v *gcView) readLabels(ns string, raw []byte) error {
	return decodePairs(raw, func(k, val []byte) {
		if !bytes.HasPrefix(k, []byte(labelGCPrefix)) {
			return
		}
		key := string(k)
		if key == labelGCExpire {
			v.expire = string(val)
			return
		}
		var root bool
		v.refs, root = appendLabelRefs(v.refs, ns, key, string(val))
		v.root = v.root || root
	})
}

// add records n with the edges of v, as a root when v says so.
func (g *gcGraph) add(n gc.Node, v gcView, removable bool) {
	if removable {
		g.removable = append(g.removable, n)
	}
	if len(v.refs) > 0 || len(v.structural) > 0 {
		g.edges[n] = gcEdges{structural: v.structural, labels: v.refs}
	}
	if v.root {
		g.roots = append(g.roots, n)
	}
}

func (g *gcGraph) addImage(ns, name string, raw []byte) {
	n := node(gc.ResourceImage, ns, name)
	var v gcView
	var target string
	err := decodeFields(raw, func(tag byte, val []byte) error {
		switch tag {
		case tagImageTargetDigest:
			target = string(val)
		case tagImageLabels:
			return v.readLabels(ns, val)
		}
		return nil
	})
	if err != nil || target == "" {
		g.keepCorrupt(n, fmt.Errorf("image %q: no readable target: %v", name, err))
		g.removable = append(g.removable, n)
		return
	}
	v.structural = []gc.Node{node(gc.ResourceContent, ns, target)}
	v.root = !g.expired(v.expire)
	g.add(n, v, true)
}

func (g *gcGraph) addContainer(ns, id string, raw []byte) {
	n := node(gc.ResourceContainer, ns, id)
	var v gcView
	var snapshotter, key string
	err := decodeFields(raw, func(tag byte, val []byte) error {
		switch tag {
		case tagCtrSnapshotter:
			snapshotter = string(val)
		case tagCtrSnapshotKey:
			key = string(val)
		case tagCtrLabels:
			return v.readLabels(ns, val)
		}
		return nil
	})
	if err != nil {
		g.keepCorrupt(n, err)
		return
	}
	if snapshotter != "" && key != "" {
		v.structural = []gc.Node{node(gc.ResourceSnapshot, ns, snapshotter+"/"+key)}
	}
	v.root = true // containers are removed by their owner only
	g.add(n, v, false)
}

func (g *gcGraph) addBlob(ns, dgst string, raw []byte) {
	n := node(gc.ResourceContent, ns, dgst)
	var v gcView
	err := decodeFields(raw, func(tag byte, val []byte) error {
		if tag == tagBlobLabels {
			return v.readLabels(ns, val)
		}
		return nil
	})
	if err != nil {
		g.removable = append(g.removable, n)
		g.keepCorrupt(n, err)
		return
	}
	g.add(n, v, true)
}

func (g *gcGraph) addIngest(ns, ref string, raw []byte) {
	n := node(gc.ResourceIngest, ns, ref)
	rec, err := decodeIngest(ref, raw)
	if err != nil {
		g.removable = append(g.removable, n)
		g.keepCorrupt(n, err)
		return
	}
	g.add(n, gcView{root: !rec.expire.IsZero() && rec.expire.After(g.now)}, true)
}

func (g *gcGraph) addSnapshot(ns, snapshotter, key string, raw []byte) {
	n := node(gc.ResourceSnapshot, ns, snapshotter+"/"+key)
	var v gcView
	err := decodeFields(raw, func(tag byte, val []byte) error {
		switch tag {
		case tagSnapParent:
			v.structural = []gc.Node{node(gc.ResourceSnapshot, ns, snapshotter+"/"+string(val))}
		case tagSnapLabels:
			return v.readLabels(ns, val)
		}
		return nil
	})
	if err != nil {
		g.removable = append(g.removable, n)
		g.keepCorrupt(n, err)
		return
	}
	g.add(n, v, true)
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
		var isRoot bool
		refs, isRoot = appendLabelRefs(refs, ns, k, v)
		root = root || isRoot
	}
	return refs, root
}

// appendLabelRefs interprets one label: references to a blob or a
// snapshot are appended to refs; the root mark is reported. A snapshot
// reference's snapshotter name ends at a '/' (containerd's convention for
// naming several references) or, failing a snapshotter by the longer name,
// at a '.': both readings are emitted, since a reference to a snapshotter
// that does not exist reaches nothing.
func appendLabelRefs(refs []gc.Node, ns, k, v string) ([]gc.Node, bool) {
	switch {
	case k == labelGCRoot:
		return refs, true
	case v == "":
		return refs, false
	case isContentRef(k):
		// Not validated: a value that is no digest names no record, and
		// validating costs a regular expression per label.
		return append(refs, node(gc.ResourceContent, ns, v)), false
	case strings.HasPrefix(k, labelGCRefSnapshot):
		name, _, _ := strings.Cut(strings.TrimPrefix(k, labelGCRefSnapshot), "/")
		if name == "" {
			return refs, false
		}
		refs = append(refs, node(gc.ResourceSnapshot, ns, name+"/"+v))
		if short, _, dotted := strings.Cut(name, "."); dotted && short != "" {
			refs = append(refs, node(gc.ResourceSnapshot, ns, short+"/"+v))
		}
	}
	return refs, false
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

// removeRecord deletes the record n stands for, noting in freed what it
// held in the backing stores.
func removeRecord(tx *bolt.Tx, n gc.Node, freed *dirtyState) error {
	nb := namespaceBucket(tx, n.Namespace)
	if nb == nil {
		return nil
	}
	switch n.Type {
	case gc.ResourceContent:
		freed.addBlob(digest.Digest(n.Key))
		return deleteKey(nb.Bucket(bucketContent), n.Key)
	case gc.ResourceIngest:
		if rec, err := getIngest(tx, n.Namespace, n.Key); err == nil {
			freed.addIngest(rec.bref)
		}
		return deleteKey(nb.Bucket(bucketIngests), n.Key)
	case gc.ResourceImage:
		return deleteKey(nb.Bucket(bucketImages), n.Key)
	case gc.ResourceLease:
		if lb := nb.Bucket(bucketLeases); lb != nil && lb.Bucket([]byte(n.Key)) != nil {
			return lb.DeleteBucket([]byte(n.Key))
		}
		return nil
	case gc.ResourceSnapshot:
		name, key, _ := strings.Cut(n.Key, "/")
		freed.addSnapshotter(name)
		b := snapshotBucket(tx, n.Namespace, name)
		rec, err := getSnapshot(b, key)
		if err != nil {
			return deleteKey(b, key)
		}
		return deleteSnapshotRecord(b, key, rec)
	}
	return fmt.Errorf("cannot remove %s", n)
}

func deleteKey(b *bolt.Bucket, key string) error {
	if b == nil {
		return nil
	}
	return b.Delete([]byte(key))
}
