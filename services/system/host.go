package system

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

type host struct {
	kernel, os, arch string
	memTotal         int64
	cgroupVersion    string
}

func readHost() host {
	h := host{os: osName(), arch: runtime.GOARCH, memTotal: memTotal(), cgroupVersion: cgroupVersion()}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		h.kernel = unix.ByteSliceToString(u.Release[:])
		h.arch = unix.ByteSliceToString(u.Machine[:])
	}
	return h
}

// osName reads PRETTY_NAME from os-release.
func osName() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return runtime.GOOS
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cgroupVersion tells a unified (v2) hierarchy from a v1 one by the type of
// the filesystem mounted on /sys/fs/cgroup.
func cgroupVersion() string {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "unknown"
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "2"
	}
	return "1"
}
