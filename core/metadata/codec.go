package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/containerd/typeurl/v2"
)

// Records are stored as one bbolt value each rather than a bucket of
// fields: a lookup is a single B-tree get, and a garbage collection over
// ten thousand blobs decodes ten thousand small values instead of opening
// ten thousand nested buckets. A record is a version byte followed by
// fields, each a tag byte, a uvarint length and that many bytes. Decoders
// skip tags they do not know, so fields can be added without a migration.

const recordVersion = 1

var errCorrupt = errors.New("corrupt metadata record")

type encoder struct{ buf []byte }

func newEncoder() *encoder { return &encoder{buf: []byte{recordVersion}} }

func (e *encoder) bytes(tag byte, v []byte) {
	e.buf = append(e.buf, tag)
	e.buf = binary.AppendUvarint(e.buf, uint64(len(v)))
	e.buf = append(e.buf, v...)
}

func (e *encoder) string(tag byte, s string) {
	if s != "" {
		e.bytes(tag, []byte(s))
	}
}

func (e *encoder) int(tag byte, v int64) {
	var b [binary.MaxVarintLen64]byte
	e.bytes(tag, b[:binary.PutVarint(b[:], v)])
}

func (e *encoder) time(tag byte, t time.Time) {
	if !t.IsZero() {
		e.int(tag, t.UnixNano())
	}
}

// strings encodes a map as sorted (key, value) pairs, each length-prefixed.
func (e *encoder) strings(tag byte, m map[string]string) {
	if len(m) == 0 {
		return
	}
	var b []byte
	for _, k := range sortedKeys(m) {
		b = appendString(b, k)
		b = appendString(b, m[k])
	}
	e.bytes(tag, b)
}

// any encodes a typeurl.Any as its type URL followed by its value.
func (e *encoder) any(tag byte, a typeurl.Any) {
	if isNilAny(a) {
		return
	}
	e.bytes(tag, appendAny(nil, a))
}

// anys encodes a map of Anys as sorted (key, any) pairs.
func (e *encoder) anys(tag byte, m map[string]typeurl.Any) {
	if len(m) == 0 {
		return
	}
	var b []byte
	for _, k := range sortedKeys(m) {
		b = appendString(b, k)
		b = appendString(b, string(appendAny(nil, m[k])))
	}
	e.bytes(tag, b)
}

func appendAny(b []byte, a typeurl.Any) []byte {
	if isNilAny(a) {
		return appendString(b, "")
	}
	b = appendString(b, a.GetTypeUrl())
	return append(b, a.GetValue()...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// decodeFields calls fn for each field of record b. The bytes passed to fn
// are only valid during the call (they may point into a bbolt page).
func decodeFields(b []byte, fn func(tag byte, v []byte) error) error {
	if len(b) == 0 || b[0] != recordVersion {
		return fmt.Errorf("%w: unknown record version", errCorrupt)
	}
	b = b[1:]
	for len(b) > 0 {
		tag := b[0]
		v, rest, err := cutBytes(b[1:])
		if err != nil {
			return err
		}
		if err := fn(tag, v); err != nil {
			return err
		}
		b = rest
	}
	return nil
}

// cutBytes splits a uvarint-length-prefixed byte string off b.
func cutBytes(b []byte) (v, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, fmt.Errorf("%w: truncated field", errCorrupt)
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

func decodeInt(v []byte) (int64, error) {
	n, k := binary.Varint(v)
	if k <= 0 || k != len(v) {
		return 0, fmt.Errorf("%w: bad integer", errCorrupt)
	}
	return n, nil
}

func decodeTime(v []byte) (time.Time, error) {
	n, err := decodeInt(v)
	if err != nil {
		return time.Time{}, err
	}
	return fromUnixNano(n), nil
}

// fromUnixNano is how every stored time is returned: UTC, no monotonic
// reading, so a time returned by a write equals the one read back.
func fromUnixNano(n int64) time.Time { return time.Unix(0, n).UTC() }

// now is the current time as it will be read back.
func now() time.Time { return fromUnixNano(time.Now().UnixNano()) }

// decodePairs calls fn for each (key, value) pair of an encoded map.
func decodePairs(v []byte, fn func(k, v []byte)) error {
	for len(v) > 0 {
		key, rest, err := cutBytes(v)
		if err != nil {
			return err
		}
		val, rest, err := cutBytes(rest)
		if err != nil {
			return err
		}
		fn(key, val)
		v = rest
	}
	return nil
}

func decodeStrings(v []byte) (map[string]string, error) {
	m := map[string]string{}
	err := decodePairs(v, func(k, val []byte) { m[string(k)] = string(val) })
	return m, err
}

func decodeAny(v []byte) (typeurl.Any, error) {
	url, rest, err := cutBytes(v)
	if err != nil {
		return nil, err
	}
	if len(url) == 0 {
		return nil, nil
	}
	return &storedAny{typeURL: string(url), value: append([]byte(nil), rest...)}, nil
}

func decodeAnys(v []byte) (map[string]typeurl.Any, error) {
	m := map[string]typeurl.Any{}
	var derr error
	err := decodePairs(v, func(k, val []byte) {
		a, err := decodeAny(val)
		if err != nil {
			derr = err
			return
		}
		m[string(k)] = a
	})
	return m, errors.Join(err, derr)
}

// storedAny is a typeurl.Any read back from the database.
type storedAny struct {
	typeURL string
	value   []byte
}

func (a *storedAny) GetTypeUrl() string { return a.typeURL }
func (a *storedAny) GetValue() []byte   { return a.value }

// isNilAny reports whether a holds nothing, including a typed nil pointer
// (a nil *anypb.Any from a request without the field).
func isNilAny(a typeurl.Any) (isNil bool) {
	if a == nil {
		return true
	}
	defer func() {
		if recover() != nil { // a nil pointer whose getters do not allow it
			isNil = true
		}
	}()
	return a.GetTypeUrl() == "" && len(a.GetValue()) == 0
}
