package gc

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// Stats describes one collection.
type Stats struct {
	// Started is when the run began.
	Started time.Time
	// Pause is how long writers were held off: marking and removing
	// records, which happen in one write transaction.
	Pause time.Duration
	// Elapsed is the whole run, removal from the backing stores included.
	Elapsed time.Duration
	// Marked counts the records found reachable.
	Marked int
	// Records are the namespaced records removed because nothing reached
	// them (expired leases included).
	Records []Node
	// Dropped are records removed because their backing object was gone
	// (a blob or snapshot deleted behind berth's back or lost in a crash).
	Dropped []Node
	// Blobs are the blobs deleted from the backing content store.
	Blobs []digest.Digest
	// Ingests are the backing ingests aborted (their backing refs).
	Ingests []string
	// Snapshots are the backing snapshots removed, by snapshotter.
	Snapshots map[string][]string
	// Reclaimed is the bytes freed by removed blobs and snapshots, as far
	// as the stores could tell before removal.
	Reclaimed int64
}

// Removed reports whether the run removed anything at all.
func (s Stats) Removed() bool {
	if len(s.Records) > 0 || len(s.Dropped) > 0 || len(s.Blobs) > 0 || len(s.Ingests) > 0 {
		return true
	}
	for _, keys := range s.Snapshots {
		if len(keys) > 0 {
			return true
		}
	}
	return false
}
