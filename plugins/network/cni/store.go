package cni

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/network"
)

// The store keeps attachments and sandboxes in one bbolt file under the
// plugin's state folder: they describe kernel state (namespaces, veths,
// leases, rules) that a reboot discards too.
//
//	attachments/  <namespace>\x00<container>\x00<network> -> attachmentRecord
//	sandboxes/    <namespace>\x00<container>              -> network.Sandbox
var (
	bucketAttachments = []byte("attachments")
	bucketSandboxes   = []byte("sandboxes")
)

// Attachment states: a record is written "adding" before the CNI ADD, so
// an ADD interrupted by a crash is found and undone at the next start.
const (
	stateAdding = "adding"
	stateReady  = "ready"
)

type attachmentRecord struct {
	network.Attachment
	State string `json:"state"`
	// CNIID is the container id given to the plugins, unique across
	// namespaces.
	CNIID string `json:"cni_id"`
	// Config is the configuration list the ADD ran with; DEL runs with
	// the same even if the file changed or went away since.
	Config []byte `json:"config"`
}

type store struct{ db *bolt.DB }

func openStore(path string) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open network records %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAttachments, bucketSandboxes} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init network records %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func attachmentKey(ns, id, net string) []byte { return []byte(ns + "\x00" + id + "\x00" + net) }
func sandboxKey(ns, id string) []byte         { return []byte(ns + "\x00" + id) }

func (s *store) put(bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, data) })
}

func (s *store) delete(bucket, key []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete(key) })
}

func (s *store) putAttachment(r *attachmentRecord) error {
	return s.put(bucketAttachments, attachmentKey(r.Namespace, r.ContainerID, r.Network), r)
}

func (s *store) deleteAttachment(r *attachmentRecord) error {
	return s.delete(bucketAttachments, attachmentKey(r.Namespace, r.ContainerID, r.Network))
}

func (s *store) attachments() ([]*attachmentRecord, error) {
	var out []*attachmentRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAttachments).ForEach(func(k, v []byte) error {
			r := &attachmentRecord{}
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("attachment record %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

func (s *store) putSandbox(sb *network.Sandbox) error {
	return s.put(bucketSandboxes, sandboxKey(sb.Namespace, sb.ID), sb)
}

func (s *store) deleteSandbox(ns, id string) error {
	return s.delete(bucketSandboxes, sandboxKey(ns, id))
}

func (s *store) sandbox(ns, id string) (*network.Sandbox, error) {
	var sb *network.Sandbox
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSandboxes).Get(sandboxKey(ns, id))
		if v == nil {
			return fmt.Errorf("network sandbox of container %s/%s: %w", ns, id, errdefs.ErrNotFound)
		}
		sb = &network.Sandbox{}
		return json.Unmarshal(v, sb)
	})
	return sb, err
}

func (s *store) sandboxes(ns string) ([]*network.Sandbox, error) {
	var out []*network.Sandbox
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSandboxes).ForEach(func(k, v []byte) error {
			sb := &network.Sandbox{}
			if err := json.Unmarshal(v, sb); err != nil {
				return fmt.Errorf("sandbox record %q: %w", k, err)
			}
			if ns == "" || sb.Namespace == ns {
				out = append(out, sb)
			}
			return nil
		})
	})
	return out, err
}
