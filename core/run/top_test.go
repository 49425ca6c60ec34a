package run

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestFilterPS(t *testing.T) {
	out := []byte("UID          PID    PPID  C STIME TTY          TIME CMD\n" +
		"root           1       0  0 10:00 ?        00:00:01 /sbin/init splash\n" +
		"root         812       1  0 10:01 ?        00:00:00 sh -c sleep 100\n" +
		"root         900     812  0 10:01 ?        00:00:00 sleep 100\n")
	titles, rows, err := filterPS(out, []uint32{812, 900})
	if err != nil {
		t.Fatal(err)
	}
	if len(titles) != 8 || len(rows) != 2 {
		t.Fatalf("titles %q rows %q", titles, rows)
	}
	if rows[0][1] != "812" || rows[0][7] != "sh -c sleep 100" || rows[1][7] != "sleep 100" {
		t.Fatalf("rows %q", rows)
	}
	if _, _, err := filterPS([]byte("USER COMMAND\nroot sh\n"), nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("no PID column: %v", err)
	}
}
