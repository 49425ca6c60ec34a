package netns

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testutil/require"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestCreateEnterRemove(t *testing.T) {
	require.Root(t)
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ns", "c1")
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(path) })
	if !IsNetNS(path) {
		t.Fatalf("%s is not a mounted netns", path)
	}
	if inode(t, path) == inode(t, "/proc/thread-self/ns/net") {
		t.Fatal("the new namespace is the host's")
	}
	var names []string
	var loUp bool
	err := Do(path, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			names = append(names, i.Name)
			if i.Name == "lo" {
				loUp = i.Flags&net.FlagUp != 0
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "lo" || !loUp {
		t.Errorf("interfaces in the new namespace = %v (lo up: %v), want only lo, up", names, loUp)
	}

	if err := Create(path); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second Create = %v, want ErrAlreadyExists", err)
	}
	if !IsNetNS(path) {
		t.Fatal("a failed second Create removed the first namespace")
	}
	list, err := List(filepath.Dir(path))
	if err != nil || len(list) != 1 || list[0] != "c1" {
		t.Errorf("List = %v, %v", list, err)
	}

	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("netns file still there after Remove: %v", err)
	}
	if err := Remove(path); err != nil {
		t.Errorf("Remove of a removed namespace: %v", err)
	}
}

func TestDoRejectsPlainFile(t *testing.T) {
	require.Root(t)
	t.Parallel()
	p := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(p, nil, 0o644)
	err := Do(p, func() error { t.Error("fn ran in a non-namespace"); return nil })
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Do on a plain file = %v", err)
	}
}

func TestDoReturnsToHostNamespace(t *testing.T) {
	require.Root(t)
	t.Parallel()
	path := filepath.Join(t.TempDir(), "n")
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	defer Remove(path)
	// thread-self, not self: /proc/self names the main thread, which may
	// be running one of the Do calls of a parallel test at this moment.
	host := inode(t, "/proc/thread-self/ns/net")
	// Many calls: a thread left in the namespace would show up as a
	// goroutine seeing the wrong namespace afterwards.
	for i := 0; i < 50; i++ {
		if err := Do(path, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		ch := make(chan uint64)
		go func() {
			var st unix.Stat_t
			unix.Stat("/proc/thread-self/ns/net", &st)
			ch <- st.Ino
		}()
		if got := <-ch; got != host {
			t.Fatalf("a goroutine runs in namespace %d after Do, want the host's %d", got, host)
		}
	}
}

// The process's main thread must never stay in a namespace Create made:
// it cannot exit like other threads, and /proc/<pid>/ns/net (what tools
// use to find berthd's namespace) follows it. Not parallel, so no other
// test is inside a namespace meanwhile.
func TestCreateLeavesProcessNamespace(t *testing.T) {
	require.Root(t)
	want := inode(t, "/proc/self/ns/net")
	dir := t.TempDir()
	for i := 0; i < 50; i++ {
		p := filepath.Join(dir, "n")
		if err := Create(p); err != nil {
			t.Fatal(err)
		}
		if err := Remove(p); err != nil {
			t.Fatal(err)
		}
		if got := inode(t, "/proc/self/ns/net"); got != want {
			t.Fatalf("after Create %d the process is in namespace %d, not %d", i, got, want)
		}
	}
}
