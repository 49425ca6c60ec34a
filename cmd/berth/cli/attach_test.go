package cli

import "testing"

func TestScanDetach(t *testing.T) {
	for _, tc := range []struct {
		in          string
		heldBefore  bool
		out         string
		hold, leave bool
	}{
		{"abc", false, "abc", false, false},
		{"ab\x10\x11cd", false, "ab", false, true},
		{"ab\x10", false, "ab", true, false},
		{"\x11rest", true, "", false, true},
		{"xy", true, "\x10xy", false, false},
		{"\x10\x10\x11", false, "\x10", false, true},
	} {
		out, hold, leave := scanDetach([]byte(tc.in), tc.heldBefore)
		if string(out) != tc.out || hold != tc.hold || leave != tc.leave {
			t.Errorf("scanDetach(%q, %v) = %q, %v, %v", tc.in, tc.heldBefore, out, hold, leave)
		}
	}
}
