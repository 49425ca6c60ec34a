package run

import (
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/mount"
)

func TestParseRestartPolicy(t *testing.T) {
	for in, want := range map[string]RestartPolicy{
		"":               {Name: RestartNo},
		"no":             {Name: RestartNo},
		"always":         {Name: RestartAlways},
		"on-failure":     {Name: RestartOnFailure},
		"on-failure:5":   {Name: RestartOnFailure, MaximumRetryCount: 5},
		"unless-stopped": {Name: RestartUnlessStopped},
	} {
		got, err := ParseRestartPolicy(in)
		if err != nil || got != want {
			t.Errorf("ParseRestartPolicy(%q) = %+v, %v", in, got, err)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%+v does not validate: %v", got, err)
		}
	}
	for _, bad := range []string{"sometimes", "always:3", "on-failure:x", "on-failure:-1", "no:1"} {
		if _, err := ParseRestartPolicy(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseRestartPolicy(%q): %v", bad, err)
		}
	}
	if s := (RestartPolicy{Name: RestartOnFailure, MaximumRetryCount: 2}).String(); s != "on-failure:2" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseFilters(t *testing.T) {
	rec := Record{Managed: true}
	rec.ID = "4f3a9b0c1d2e4f3a9b0c1d2e4f3a9b0c1d2e4f3a9b0c1d2e4f3a9b0c1d2e4f3a"
	rec.Image = "docker.io/library/busybox:latest"
	rec.Labels = map[string]string{"team": "a"}
	rec.Config = Config{Name: "calm_harbor", ImageID: "sha256:6feffbe49857fda3952731959364fa85c0745af62b5eea8b3e44c046cb03b7c9"}
	rec.State = State{Status: StatusExited, ExitCode: 3}
	for _, tc := range []struct {
		filters []string
		match   bool
	}{
		{nil, true},
		{[]string{"status=exited"}, true},
		{[]string{"status=running"}, false},
		{[]string{"status=running", "status=exited"}, true},
		{[]string{"status=exited", "name=harbor"}, true},
		{[]string{"status=exited", "name=dock"}, false},
		{[]string{"id=4f3a9"}, true},
		{[]string{"label=team"}, true},
		{[]string{"label=team=b"}, false},
		{[]string{"ancestor=busybox"}, true},
		{[]string{"ancestor=busybox:latest"}, true},
		{[]string{"ancestor=6feffbe4"}, true},
		{[]string{"ancestor=alpine"}, false},
		{[]string{"exited=3"}, true},
		{[]string{"exited=0"}, false},
	} {
		f, err := ParseFilters(tc.filters)
		if err != nil {
			t.Fatalf("%v: %v", tc.filters, err)
		}
		if got := f(rec); got != tc.match {
			t.Errorf("filters %v matched %v, want %v", tc.filters, got, tc.match)
		}
	}
	for _, bad := range []string{"colour=blue", "status", "status=sleeping", "exited=x"} {
		if _, err := ParseFilters([]string{bad}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("filter %q: %v", bad, err)
		}
	}
}

func TestStartExitCode(t *testing.T) {
	for msg, want := range map[string]int{
		`runc create failed: unable to start container process: exec: "nosuch": executable file not found in $PATH`: 127,
		`exec: "/nope": stat /nope: no such file or directory`:                                                      127,
		`runc create failed: unable to start container process: exec: "/etc/passwd": permission denied`:             126,
		`shim died`: 128,
	} {
		if got := StartExitCode(fmt.Errorf("%s", msg)); got != want {
			t.Errorf("StartExitCode(%q) = %d, want %d", msg, got, want)
		}
	}
}

func TestLogURI(t *testing.T) {
	u, err := url.Parse(LogURI(LogConfig{Path: "/var/lib/berth/c/c-json.log", MaxSize: 10 << 20, MaxFile: 3}))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "file" || u.Path != "/var/lib/berth/c/c-json.log" || q.Get("format") != "json" || q.Get("partial") != "flush" ||
		q.Get("max-size") != "10485760" || q.Get("max-file") != "3" {
		t.Errorf("LogURI = %s", u)
	}
	if u, _ := url.Parse(LogURI(LogConfig{Path: "/l"})); u.Query().Has("max-size") {
		t.Errorf("no rotation asked, got %s", u)
	}
}

func TestOverlayDirs(t *testing.T) {
	upper, lowers, ok := overlayDirs([]mount.Mount{{Type: "overlay", Source: "overlay",
		Options: []string{"index=off", "workdir=/s/3/work", "upperdir=/s/3/fs", "lowerdir=/s/2/fs:/s/1/fs"}}})
	if !ok || upper != "/s/3/fs" || len(lowers) != 2 || lowers[1] != "/s/1/fs" {
		t.Errorf("overlayDirs = %q %q %v", upper, lowers, ok)
	}
	if _, _, ok := overlayDirs([]mount.Mount{{Type: "bind", Source: "/s/1/fs"}}); ok {
		t.Error("a bind mount read as overlay")
	}
	if m := lowerMounts([]string{"/a"}); m[0].Type != "bind" || !m[0].ReadOnly() {
		t.Errorf("one lower: %+v", m)
	}
	if m := lowerMounts([]string{"/a", "/b"}); m[0].Type != "overlay" || m[0].Options[0] != "lowerdir=/a:/b" {
		t.Errorf("two lowers: %+v", m)
	}
}
