package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/berthd/berth/core/snapshots"
)

// record is what the store keeps for one snapshot, under its key or name.
// It is encoded as one compact value rather than a bucket of fields, so a
// lookup is a single B-tree get and a snapshot costs one small entry.
type record struct {
	id      uint64
	kind    snapshots.Kind
	parent  string
	parents []uint64 // ids of the ancestors, nearest first
	created time.Time
	updated time.Time
	usage   snapshots.Usage
	labels  map[string]string
}

// recordVersion leads every encoded record so the layout can change later.
const recordVersion = 1

func (r record) info(name string) snapshots.Info {
	return snapshots.Info{
		Kind:    r.kind,
		Name:    name,
		Parent:  r.parent,
		Labels:  copyLabels(r.labels),
		Created: r.created,
		Updated: r.updated,
	}
}

func (r record) marshal() []byte {
	b := make([]byte, 0, 64+8*len(r.parents)+32*len(r.labels))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.id)
	b = append(b, byte(r.kind))
	b = appendString(b, r.parent)
	b = binary.AppendUvarint(b, uint64(len(r.parents)))
	for _, p := range r.parents {
		b = binary.AppendUvarint(b, p)
	}
	b = binary.AppendVarint(b, r.created.UnixNano())
	b = binary.AppendVarint(b, r.updated.UnixNano())
	b = binary.AppendVarint(b, r.usage.Inodes)
	b = binary.AppendVarint(b, r.usage.Size)
	keys := make([]string, 0, len(r.labels))
	for k := range r.labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, r.labels[k])
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorrupt = errors.New("truncated or corrupt")

// decoder reads a record, remembering the first error so the field reads
// stay a flat list.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint undoes the zig-zag coding binary.AppendVarint puts over an
// unsigned varint, as binary.Varint does.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads a length and checks it against the bytes left, each element
// taking at least one byte, so a corrupt value cannot make a huge slice.
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errCorrupt
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func unmarshalRecord(b []byte) (record, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != recordVersion {
		return record{}, fmt.Errorf("record version %d is not %d", v, recordVersion)
	}
	var r record
	r.id = d.uvarint()
	r.kind = snapshots.Kind(d.byte())
	r.parent = d.string()
	if n := d.count(); n > 0 {
		r.parents = make([]uint64, n)
		for i := range r.parents {
			r.parents[i] = d.uvarint()
		}
	}
	r.created = time.Unix(0, d.varint()).UTC()
	r.updated = time.Unix(0, d.varint()).UTC()
	r.usage.Inodes = d.varint()
	r.usage.Size = d.varint()
	if n := d.count(); n > 0 {
		r.labels = make(map[string]string, n)
		for range n {
			k := d.string()
			r.labels[k] = d.string()
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return r, d.err
}

func copyLabels(labels map[string]string) map[string]string {
	if len(labels) == 0 {
		return nil
	}
	c := make(map[string]string, len(labels))
	for k, v := range labels {
		c[k] = v
	}
	return c
}
