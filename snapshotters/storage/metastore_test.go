package storage

import (
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/core/snapshots"
	"github.com/containerd/errdefs"
)

func TestRecordRoundTrip(t *testing.T) {
	r := record{
		id:      300,
		kind:    snapshots.KindCommitted,
		parent:  "p",
		parents: []uint64{299, 7, 1},
		created: time.Unix(1, 2).UTC(),
		updated: time.Unix(3, 4).UTC(),
		usage:   snapshots.Usage{Inodes: 5, Size: 1 << 40},
		labels:  map[string]string{"a": "1", "b": ""},
	}
	b := r.marshal()
	got, err := unmarshalRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: got %+v, want %+v", got, r)
	}
	for n := range len(b) {
		if _, err := unmarshalRecord(b[:n]); err == nil {
			t.Errorf("record cut to %d of %d bytes accepted", n, len(b))
		}
	}
	if _, err := unmarshalRecord(append(b, 0)); err == nil {
		t.Error("record with trailing bytes accepted")
	}
}

// decoder.varint reads the zig-zag coding itself; it must agree with
// encoding/binary on every sign and on overflowing input.
func TestDecoderVarint(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, -64, 1 << 40, -(1 << 40), math.MaxInt64, math.MinInt64} {
		d := decoder{b: binary.AppendVarint(nil, v)}
		if got := d.varint(); d.err != nil || got != v || len(d.b) != 0 {
			t.Errorf("varint %d: got %d, err %v, %d bytes left", v, got, d.err, len(d.b))
		}
	}
	overflow := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}
	if _, n := binary.Varint(overflow); n >= 0 {
		t.Fatalf("binary.Varint accepted an overflowing value (n=%d)", n)
	}
	d := decoder{b: overflow}
	if d.varint(); d.err == nil {
		t.Error("overflowing varint accepted")
	}
}

func openMeta(t *testing.T) *MetaStore {
	t.Helper()
	ms, err := OpenMetaStore(filepath.Join(t.TempDir(), DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	return ms
}

func update(t *testing.T, ms *MetaStore, fn func(*Tx) error) error {
	t.Helper()
	return ms.Update(context.Background(), fn)
}

func TestParentChains(t *testing.T) {
	ms := openMeta(t)
	var ids []uint64
	parent := ""
	for _, name := range []string{"a", "b", "c"} {
		err := update(t, ms, func(tx *Tx) error {
			snap, err := tx.Create(snapshots.KindActive, name+"-key", parent)
			if err != nil {
				return err
			}
			if want := reversed(ids); !reflect.DeepEqual(snap.ParentIDs, want) {
				t.Errorf("%s: parent ids %v, want %v", name, snap.ParentIDs, want)
			}
			id, err := tx.Commit(name+"-key", name, snapshots.Usage{Size: 1})
			if id != snap.ID {
				t.Errorf("commit changed id %d to %d", snap.ID, id)
			}
			ids = append(ids, id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		parent = name
	}
	err := update(t, ms, func(tx *Tx) error {
		snap, err := tx.Create(snapshots.KindView, "v", "c")
		if err != nil {
			return err
		}
		if want := reversed(ids); !reflect.DeepEqual(snap.ParentIDs, want) {
			t.Errorf("view parent ids %v, want %v", snap.ParentIDs, want)
		}
		all, err := tx.IDs()
		if len(all) != 4 {
			t.Errorf("IDs = %v, want 4 ids", all)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func reversed(ids []uint64) []uint64 {
	var out []uint64
	for i := len(ids) - 1; i >= 0; i-- {
		out = append(out, ids[i])
	}
	return out
}

func TestRemoveChildren(t *testing.T) {
	ms := openMeta(t)
	err := update(t, ms, func(tx *Tx) error {
		if _, err := tx.Create(snapshots.KindActive, "k", ""); err != nil {
			return err
		}
		if _, err := tx.Commit("k", "base", snapshots.Usage{}); err != nil {
			return err
		}
		for _, key := range []string{"c1", "c2"} {
			if _, err := tx.Create(snapshots.KindActive, key, "base"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"c1", "c2", "base"} {
		err := update(t, ms, func(tx *Tx) error {
			_, _, err := tx.Remove("base")
			if key != "base" && !errdefs.IsFailedPrecondition(err) {
				t.Errorf("remove base with children left: %v", err)
			}
			if key == "base" {
				return err
			}
			_, kind, err := tx.Remove(key)
			if kind != snapshots.KindActive {
				t.Errorf("removed %q of kind %v", key, kind)
			}
			return err
		})
		if err != nil {
			t.Fatalf("remove %q: %v", key, err)
		}
	}
}

func TestCommitRebase(t *testing.T) {
	ms := openMeta(t)
	err := update(t, ms, func(tx *Tx) error {
		for _, key := range []string{"k1", "k2"} {
			if _, err := tx.Create(snapshots.KindActive, key, ""); err != nil {
				return err
			}
		}
		if _, err := tx.Commit("k1", "base", snapshots.Usage{}); err != nil {
			return err
		}
		// k2 was prepared without a parent: it may be placed on base.
		withParent := func(info *snapshots.Info) error { info.Parent = "base"; return nil }
		if _, err := tx.Commit("k2", "top", snapshots.Usage{}, withParent); err != nil {
			return err
		}
		_, info, _, err := tx.Info("top")
		if info.Parent != "base" {
			t.Errorf("rebased commit has parent %q", info.Parent)
		}
		if _, _, err := tx.Remove("base"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("remove of the new parent: %v", err)
		}
		if _, err := tx.Create(snapshots.KindActive, "k3", "top"); err != nil {
			return err
		}
		other := func(info *snapshots.Info) error { info.Parent = "base"; return nil }
		if _, err := tx.Commit("k3", "x", snapshots.Usage{}, other); !errdefs.IsInvalidArgument(err) {
			t.Errorf("commit changing an existing parent: %v", err)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLabelLimits(t *testing.T) {
	ms := openMeta(t)
	huge := map[string]string{"k": strings.Repeat("v", 5000)}
	err := update(t, ms, func(tx *Tx) error {
		_, err := tx.Create(snapshots.KindActive, "k", "", snapshots.WithLabels(huge))
		return err
	})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("oversized label: %v", err)
	}
	err = update(t, ms, func(tx *Tx) error {
		if _, err := tx.Create(snapshots.KindActive, "k", ""); err != nil {
			return err
		}
		_, err := tx.Update(snapshots.Info{Name: "k", Labels: huge})
		return err
	})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("oversized label by update: %v", err)
	}
	err = update(t, ms, func(tx *Tx) error {
		_, err := tx.Create(snapshots.KindActive, "", "")
		return err
	})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("empty key: %v", err)
	}
}

func TestOpenHeldDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), DatabaseFile)
	ms, err := OpenMetaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	// bbolt locks with flock, which is per open file: a second open in
	// the same process meets the lock as another process would.
	if _, err := OpenMetaStore(path); !errdefs.IsUnavailable(err) {
		t.Fatalf("second open of a held database: %v, want unavailable", err)
	}
}
