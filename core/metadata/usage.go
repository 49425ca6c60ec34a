package metadata

import (
	"context"
	"sort"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/gc"
	"github.com/berthd/berth/core/usage"
)

var _ usage.DiskReporter = (*DB)(nil)

// DiskUsage reports the disk used by content in namespace ns ("" for all)
// as two summaries. "Content": every blob (a blob recorded in several
// namespaces is stored, and counted, once), Active those reachable from
// an image through gc.ref.content labels, Reclaimable the bytes of the
// others, which a collection removes unless a lease or gc.root label
// holds them. "Images": Active the images a container was made from, Size
// the bytes reachable from any image, Reclaimable the bytes reachable only
// from images no container uses. With verbose, one item per image: its
// bytes, the part shared with other images and its containers.
func (m *DB) DiskUsage(ctx context.Context, ns string, verbose bool) ([]usage.Summary, []usage.Item, error) {
	var du diskUsage
	err := m.View(func(tx *bolt.Tx) error {
		du = newDiskUsage()
		return eachNamespace(tx, func(name string, nb *bolt.Bucket) error {
			if ns != "" && name != ns {
				return nil
			}
			return du.scanNamespace(name, nb)
		})
	})
	if err != nil {
		return nil, nil, err
	}
	summaries, items := du.report()
	if !verbose {
		items = nil
	}
	return summaries, items, nil
}

type imageUse struct {
	ns, name string
	blobs    map[digest.Digest]bool
	users    int64
}

type diskUsage struct {
	sizes  map[digest.Digest]int64 // every recorded blob
	images []*imageUse
}

func newDiskUsage() diskUsage {
	return diskUsage{sizes: map[digest.Digest]int64{}}
}

func (du *diskUsage) scanNamespace(ns string, nb *bolt.Bucket) error {
	refs := map[digest.Digest][]digest.Digest{}
	if b := nb.Bucket(bucketContent); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			info, err := decodeBlob(digest.Digest(k), v)
			if err != nil {
				return err
			}
			du.sizes[info.Digest] = info.Size
			for _, n := range contentRefs(ns, info.Labels) {
				refs[info.Digest] = append(refs[info.Digest], digest.Digest(n))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	users, err := imageUsers(nb.Bucket(bucketContainers))
	if err != nil {
		return err
	}
	b := nb.Bucket(bucketImages)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		img, err := decodeImage(string(k), v)
		if err != nil {
			return err
		}
		du.images = append(du.images, &imageUse{ns: ns, name: img.Name, blobs: reach(img.Target.Digest, refs), users: users[img.Name]})
		return nil
	})
}

// contentRefs returns the digests of the blobs a set of labels references.
func contentRefs(ns string, labels map[string]string) []string {
	nodes, _ := labelRefs(ns, labels)
	var out []string
	for _, n := range nodes {
		if n.Type == gc.ResourceContent {
			out = append(out, n.Key)
		}
	}
	return out
}

// reach is the set of blobs reachable from root through refs.
func reach(root digest.Digest, refs map[digest.Digest][]digest.Digest) map[digest.Digest]bool {
	seen := map[digest.Digest]bool{root: true}
	stack := []digest.Digest{root}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, r := range refs[d] {
			if !seen[r] {
				seen[r] = true
				stack = append(stack, r)
			}
		}
	}
	return seen
}

// imageUsers counts the containers of a namespace by image name.
func imageUsers(b *bolt.Bucket) (map[string]int64, error) {
	users := map[string]int64{}
	if b == nil {
		return users, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		c, err := decodeContainer(string(k), v)
		if err == nil && c.Image != "" {
			users[c.Image]++
		}
		return err
	})
	return users, err
}

func (du *diskUsage) report() ([]usage.Summary, []usage.Item) {
	fromImages := map[digest.Digest]int{}
	fromUsed := map[digest.Digest]bool{}
	for _, img := range du.images {
		for d := range img.blobs {
			fromImages[d]++
			if img.users > 0 {
				fromUsed[d] = true
			}
		}
	}
	contentSum := usage.Summary{Type: "Content", Total: int64(len(du.sizes))}
	imageSum := usage.Summary{Type: "Images", Total: int64(len(du.images))}
	for d, size := range du.sizes {
		contentSum.Size += size
		if fromImages[d] > 0 {
			contentSum.Active++
			imageSum.Size += size
			if !fromUsed[d] {
				imageSum.Reclaimable += size
			}
		} else {
			contentSum.Reclaimable += size
		}
	}
	var items []usage.Item
	for _, img := range du.images {
		if img.users > 0 {
			imageSum.Active++
		}
		item := usage.Item{Type: "Images", Namespace: img.ns, Name: img.name, Users: img.users}
		for d := range img.blobs {
			item.Size += du.sizes[d]
			if fromImages[d] > 1 {
				item.SharedSize += du.sizes[d]
			}
		}
		items = append(items, item)
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	return []usage.Summary{imageSum, contentSum}, items
}
