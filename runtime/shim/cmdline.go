package shim

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// setCmdline rewrites the command line the process shows (in ps, and to
// whoever looks for a container's shim by its flags) to args, in the
// space the original took. The original's strings change with it: the
// caller must not keep any (flags are cloned first).
func setCmdline(args []string) error {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return err
	}
	// Fields after the command name in parentheses start with the 3rd;
	// arg_start and arg_end are the 48th and 49th.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return fmt.Errorf("unexpected /proc/self/stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 47 {
		return fmt.Errorf("/proc/self/stat has %d fields after the name", len(f))
	}
	start, err1 := strconv.ParseInt(f[45], 10, 64)
	end, err2 := strconv.ParseInt(f[46], 10, 64)
	if err1 != nil || err2 != nil || end <= start {
		return fmt.Errorf("no argument area in /proc/self/stat")
	}
	line := []byte(strings.Join(args, "\x00"))
	if int64(len(line)) >= end-start {
		return fmt.Errorf("command line of %d bytes does not fit in %d", len(line), end-start)
	}
	// The rest of the area becomes NULs: empty trailing arguments, which
	// ps prints as nothing.
	buf := make([]byte, end-start)
	copy(buf, line)
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer mem.Close()
	_, err = mem.WriteAt(buf, start)
	return err
}

// cloneFlags copies f's strings out of the argument area, which
// setCmdline overwrites.
func cloneFlags(f *flags) {
	for _, s := range []*string{&f.namespace, &f.id, &f.address, &f.publishBinary, &f.bundle, &f.action} {
		*s = strings.Clone(*s)
	}
}
