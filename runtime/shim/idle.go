package shim

import (
	"bufio"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// quietDelay is how long the shim must have been idle before it trims.
const quietDelay = 2 * time.Second

// settleDelay separates the trim's collection from the unmapping.
const settleDelay = 100 * time.Millisecond

// idleTrimmer gives back memory a quiet shim is not using. One shim runs
// per container and spends nearly all its life waiting, so once a burst of
// work (requests, a garbage collection) has been followed by quietDelay of
// nothing, it:
//   - returns the free heap to the kernel (debug.FreeOSMemory), and
//   - unmaps the pages of its executable's code and read-only data
//     (madvise MADV_DONTNEED on the read-only file mappings). Those pages
//     stay in the page cache, shared by every shim; the shim faults back
//     the few it needs when it wakes. Writable mappings are never touched.
//
// It runs no periodic timer: an idle shim stays asleep.
type idleTrimmer struct {
	text []span

	mu     sync.Mutex
	timer  *time.Timer
	gcs    []metrics.Sample
	lastGC uint64 // GC count right after the last trim
}

// span is an address range of the process.
type span struct {
	start, length uintptr
}

// gcSentinel is garbage whose finalizer tells the trimmer a collection ran.
type gcSentinel struct {
	_ [16]byte
	_ *int
}

func newIdleTrimmer() *idleTrimmer {
	t := &idleTrimmer{gcs: []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}}
	var err error
	if t.text, err = readOnlyExecutableMappings(); err != nil {
		slog.Debug("find executable mappings", "error", err)
	}
	t.timer = time.AfterFunc(quietDelay, t.trim)
	t.watchGC()
	return t
}

// Touch records activity: the trim waits for quietDelay after the last.
func (t *idleTrimmer) Touch() {
	t.timer.Reset(quietDelay)
}

// watchGC arms a sentinel whose finalizer runs after the next collection;
// a collection other than the trim's own counts as activity.
func (t *idleTrimmer) watchGC() {
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
		t.mu.Lock()
		own := t.gcCount() == t.lastGC
		t.mu.Unlock()
		if !own {
			t.Touch()
		}
		t.watchGC()
	})
}

func (t *idleTrimmer) gcCount() uint64 {
	metrics.Read(t.gcs)
	if t.gcs[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return t.gcs[0].Value.Uint64()
}

func (t *idleTrimmer) trim() {
	t.mu.Lock()
	debug.FreeOSMemory()
	t.lastGC = t.gcCount()
	t.mu.Unlock()
	// Let the collection's aftermath (finalizers, sweeping) run first, so
	// the code it needs is not faulted back right after the unmapping.
	time.Sleep(settleDelay)
	for _, m := range t.text {
		// The range is a mapping, not Go memory: pass it as plain numbers.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, m.start, m.length, unix.MADV_DONTNEED)
	}
}

// readOnlyExecutableMappings lists the mappings of the shim's own
// executable that cannot hold private changes (no write permission).
func readOnlyExecutableMappings() ([]span, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || len(fields[1]) < 4 || fields[1][1] == 'w' || fields[1][3] != 'p' {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		out = append(out, span{start: uintptr(lo), length: uintptr(hi - lo)})
	}
	return out, sc.Err()
}
