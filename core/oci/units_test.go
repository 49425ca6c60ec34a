package oci

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"0":      0,
		"100":    100,
		"100b":   100,
		"512k":   512 << 10,
		"512K":   512 << 10,
		"256m":   256 << 20,
		"256mb":  256 << 20,
		"256MiB": 256 << 20,
		"1g":     1 << 30,
		"1.5g":   3 << 29,
		"1.5 GB": 3 << 29,
		"2t":     2 << 40,
		"1p":     1 << 50,
		"0.5k":   512,
		"1.0001": 1,
		" 64m ":  64 << 20,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "m", "-1", "-1g", "1x", "1.2.3m", "1..5", ".5g", "5.g", "1gg", "1bi", "1 2", "1e3", "0x10", "99999999999p"} {
		_, err := ParseSize(bad)
		wantInvalid(t, err, bad)
	}
}

func TestParseCPUs(t *testing.T) {
	good := map[string]int64{"1": 1e9, "1.5": 15e8, "0.01": 1e7, "2.000000001": 2000000001, " 4 ": 4e9, "0": 0}
	for in, want := range good {
		got, err := ParseCPUs(in)
		if err != nil || got != want {
			t.Errorf("ParseCPUs(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "-0.5", "abc", "1/2", "1e3", "0x2", "1.0000000001", "1.2.3", ".", "99999999999999"} {
		_, err := ParseCPUs(bad)
		wantInvalid(t, err, bad)
	}
}

func TestParseUlimit(t *testing.T) {
	tests := map[string]specs.POSIXRlimit{
		"nofile=1024:2048": {Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 2048},
		"nproc=100":        {Type: "RLIMIT_NPROC", Soft: 100, Hard: 100},
		"core=-1":          {Type: "RLIMIT_CORE", Soft: math.MaxUint64, Hard: math.MaxUint64},
		"memlock=1:-1":     {Type: "RLIMIT_MEMLOCK", Soft: 1, Hard: math.MaxUint64},
		"RTPRIO=5:5":       {Type: "RLIMIT_RTPRIO", Soft: 5, Hard: 5},
	}
	for in, want := range tests {
		got, err := ParseUlimit(in)
		if err != nil || got != want {
			t.Errorf("ParseUlimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, bad := range map[string]string{
		"nofile":           "nofile",
		"=5":               "=5",
		"nofile=":          "nofile=",
		"bogus=1":          "RLIMIT_BOGUS",
		"nofile=2048:1024": "RLIMIT_NOFILE",
		"nofile=x":         "nofile=x",
		"nofile=1:2:3":     "nofile=1:2:3",
	} {
		_, err := ParseUlimit(in)
		wantInvalid(t, err, bad)
	}
}

func TestParseEnvFile(t *testing.T) {
	input := "\xEF\xBB\xBF# comment\n" +
		"A=1\n" +
		"   B=two words  \n" +
		"\n" +
		"C=\"quoted\"\n" +
		"EMPTY=\n" +
		"FROMHOST\n" +
		"UNSET_ON_HOST\n" +
		"\tD=x=y\r\n"
	lookup := func(k string) (string, bool) {
		if k == "FROMHOST" {
			return "host value", true
		}
		return "", false
	}
	got, err := ParseEnvFile(strings.NewReader(input), lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=two words  ", `C="quoted"`, "EMPTY=", "FROMHOST=host value", "D=x=y"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	got, err = ParseEnvFile(strings.NewReader("FROMHOST\nX=1\n"), nil)
	if err != nil || !slices.Equal(got, []string{"X=1"}) {
		t.Fatalf("without lookup: %q, %v", got, err)
	}
	for in, bad := range map[string]string{
		"=value\n":         "line 1",
		"A B=1\n":          "A B",
		"OK=1\nBAD KEY\n":  "BAD KEY",
		"X=\xff\xfe\n":     "UTF-8",
		"OK=1\n  =novar\n": "line 2",
		"TRAILING \n":      "TRAILING ",
	} {
		_, err := ParseEnvFile(strings.NewReader(in), lookup)
		wantInvalid(t, err, bad)
	}
	_, err = ParseEnvFile(strings.NewReader("A="+strings.Repeat("x", maxEnvFile)), nil)
	wantInvalid(t, err, "larger")
}

func TestReadEnvFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(name, []byte("A=1\nB=2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadEnvFile(name, nil)
	if err != nil || !slices.Equal(got, []string{"A=1", "B=2"}) {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := ReadEnvFile(name+".missing", nil); err == nil {
		t.Fatal("missing env file read")
	}
}

func TestParseSignal(t *testing.T) {
	good := map[string]unix.Signal{
		"SIGTERM":    unix.SIGTERM,
		"term":       unix.SIGTERM,
		"SIGKILL":    unix.SIGKILL,
		"9":          unix.SIGKILL,
		"SIGUSR1":    unix.SIGUSR1,
		"SIGRTMIN":   34,
		"RTMIN+3":    37,
		"SIGRTMAX":   64,
		"SIGRTMAX-2": 62,
		"64":         64,
	}
	for in, want := range good {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "SIGFOO", "0", "65", "-1", "RTMIN+40", "RTMAX+1", "RTMINX"} {
		_, err := ParseSignal(bad)
		wantInvalid(t, err, bad)
	}
}

func TestStopSignal(t *testing.T) {
	img := ocispec.ImageConfig{StopSignal: "SIGQUIT"}
	for _, tt := range []struct {
		img      ocispec.ImageConfig
		override string
		want     unix.Signal
	}{
		{ocispec.ImageConfig{}, "", unix.SIGTERM},
		{img, "", unix.SIGQUIT},
		{img, "SIGINT", unix.SIGINT},
	} {
		got, err := StopSignal(tt.img, tt.override)
		if err != nil || got != tt.want {
			t.Errorf("StopSignal(%q, %q) = %v, %v; want %v", tt.img.StopSignal, tt.override, got, err, tt.want)
		}
	}
	_, err := StopSignal(ocispec.ImageConfig{StopSignal: "SIGNOPE"}, "")
	wantInvalid(t, err, "SIGNOPE")
}
