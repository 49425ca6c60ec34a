// Package require decides what a test does when something it needs is
// missing: outside CI it skips with a message naming what is missing; under
// CI=true a missing dependency fails the test, because CI installs
// everything and a skip there would hide a broken setup.
package require

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips t, or fails it under CI, saying what is missing.
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("missing under CI: %s", what)
	}
	t.Skipf("missing: %s", what)
}

// Root requires the test to run as root.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root privileges (run the tests as root)")
	}
}

// Binary returns the path of a program on PATH (or one of extra paths),
// skipping or failing when it is absent.
func Binary(t testing.TB, name string, extra ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Missing(t, "the "+name+" binary (apt-get install the package that ships it; 'make deps-test' does)")
	return ""
}
