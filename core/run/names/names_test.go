package names

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidate(t *testing.T) {
	for _, good := range []string{"ab", "web1", "my_app.v2-x", "A0", "0abc"} {
		if err := Validate(good); err != nil {
			t.Errorf("Validate(%q): %v", good, err)
		}
	}
	for _, bad := range []string{"", "a", "-ab", "_ab", ".ab", "a b", "a/b", "a:b", "ä-b", "ab\n", strings.Repeat("a", 129)} {
		err := Validate(bad)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Validate(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if !IsID(id) {
			t.Fatalf("NewID() = %q is not 64 hex characters", id)
		}
		if allDigits(Short(id)) {
			t.Fatalf("short id %q is all digits", Short(id))
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
	if IsID(strings.Repeat("g", 64)) || IsID("abc") {
		t.Error("IsID accepted a non-id")
	}
}

func TestGenerate(t *testing.T) {
	taken := map[string]bool{}
	for range 500 {
		name := Generate(func(n string) bool { return taken[n] })
		if taken[name] {
			t.Fatalf("Generate returned %q, which is taken", name)
		}
		if err := Validate(name); err != nil {
			t.Fatalf("generated name %q is invalid: %v", name, err)
		}
		if !strings.Contains(name, "_") {
			t.Fatalf("generated name %q is not adjective_noun", name)
		}
		taken[name] = true
	}
}

func TestGenerateWhenEverySimpleNameIsTaken(t *testing.T) {
	// Only names with a digit suffix are free: Generate must get there.
	name := Generate(func(n string) bool { return !strings.ContainsAny(n[len(n)-1:], "0123456789") })
	if c := name[len(name)-1]; c < '0' || c > '9' {
		t.Fatalf("Generate = %q, want a digit suffix", name)
	}
}
