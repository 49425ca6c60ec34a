package metadata

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestNamespaceLifecycle(t *testing.T) {
	ctx := context.Background()
	ns := openTest(t).Namespaces()
	if err := ns.Create(ctx, "web", map[string]string{"team": "a"}); err != nil {
		t.Fatal(err)
	}
	if err := ns.Create(ctx, "web", nil); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second create: %v", err)
	}
	if err := ns.SetLabel(ctx, "web", "tier", "front"); err != nil {
		t.Fatal(err)
	}
	lbls, _ := ns.Labels(ctx, "web")
	if lbls["team"] != "a" || lbls["tier"] != "front" {
		t.Errorf("labels %v", lbls)
	}
	lbls, err := ns.Update(ctx, "web", map[string]string{"team": "b"}, "labels.team", "labels.tier")
	if err != nil || lbls["team"] != "b" || len(lbls) != 1 {
		t.Errorf("field-path update: %v %v", lbls, err)
	}
	lbls, _ = ns.Update(ctx, "web", map[string]string{"x": "y"})
	if len(lbls) != 1 || lbls["x"] != "y" {
		t.Errorf("update without paths must replace all labels: %v", lbls)
	}
	if _, err := ns.Update(ctx, "web", nil, "name"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("update of name: %v", err)
	}
	names, _ := ns.List(ctx)
	if len(names) != 1 || names[0] != "web" {
		t.Errorf("list %v", names)
	}
	if err := ns.Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := ns.Delete(ctx, "web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}

func TestNamespaceValidation(t *testing.T) {
	ctx := context.Background()
	ns := openTest(t).Namespaces()
	for _, bad := range []string{"", "a b", "-x", "x-", "a..b", strings.Repeat("a", 77), "a/b"} {
		if err := ns.Create(ctx, bad, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("create %q: %v", bad, err)
		}
	}
	if err := ns.Create(ctx, "ok", map[string]string{"": "v"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("empty label key: %v", err)
	}
	if err := ns.Create(ctx, "ok", map[string]string{"k": strings.Repeat("v", 5000)}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("oversized label: %v", err)
	}
	if err := ns.Create(ctx, strings.Repeat("a", 76), nil); err != nil {
		t.Errorf("76 characters is allowed: %v", err)
	}
}

func TestDeleteNonEmptyNamespaceNamesWhatIsLeft(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	ns := db.Namespaces()
	ns.Create(ctx, "busy", nil)
	db.Update(func(tx *bolt.Tx) error {
		b, _ := CreateBucket(tx, "busy", "images")
		b.CreateBucket([]byte("docker.io/library/busybox:latest"))
		CreateBucket(tx, "busy", "containers")
		return nil
	})
	err := ns.Delete(ctx, "busy")
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "images") || strings.Contains(err.Error(), "containers") {
		t.Fatalf("delete of a namespace holding an image: %v", err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, _ := db.Version(); v != SchemaVersion {
		t.Errorf("schema version %d", v)
	}
	start := time.Now()
	_, err = Open(path)
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second open: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("second open took %s", time.Since(start))
	}
}
