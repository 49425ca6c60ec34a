package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	transfertypes "github.com/containerd/containerd/api/types/transfer"

	"github.com/berthd/berth/core/remotes/auth"
	"github.com/berthd/berth/core/transfer"
)

const layerName = "layer-sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func events(v *progressView, evs ...*transfertypes.Progress) {
	for _, e := range evs {
		v.handle(e)
	}
	v.finish()
}

func TestProgressPlainLinesOnStateChanges(t *testing.T) {
	var out bytes.Buffer
	v := newProgressView(&out, false, false)
	events(v,
		&transfertypes.Progress{Event: transfer.EventResolving, Name: "example.com/app:1"},
		&transfertypes.Progress{Event: transfer.EventWaiting, Name: layerName, Total: 2000},
		&transfertypes.Progress{Event: transfer.EventDownloading, Name: layerName, Progress: 100, Total: 2000},
		&transfertypes.Progress{Event: transfer.EventDownloading, Name: layerName, Progress: 900, Total: 2000},
		&transfertypes.Progress{Event: transfer.EventComplete, Name: layerName, Progress: 2000, Total: 2000},
		&transfertypes.Progress{Event: transfer.EventExtracting, Name: layerName, Progress: 10, Total: 2000},
		&transfertypes.Progress{Event: transfer.EventExtracted, Name: layerName, Progress: 2000, Total: 2000},
		&transfertypes.Progress{Event: "manifest-only", Name: "manifest-sha256:ff"},
	)
	want := "resolving example.com/app:1\n" +
		"0123456789ab: waiting\n" +
		"0123456789ab: downloading 2kB\n" +
		"0123456789ab: download complete\n" +
		"0123456789ab: extracting\n" +
		"0123456789ab: pull complete\n"
	if out.String() != want {
		t.Errorf("plain progress:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestProgressTerminalRedrawsInPlace(t *testing.T) {
	var out bytes.Buffer
	v := newProgressView(&out, true, false)
	events(v,
		&transfertypes.Progress{Event: transfer.EventDownloading, Name: layerName, Progress: 1000, Total: 2000},
		&transfertypes.Progress{Event: transfer.EventExtracted, Name: layerName, Progress: 2000, Total: 2000},
		&transfertypes.Progress{Event: transfer.EventUnpacked, Name: "overlayfs", Progress: 1, Total: 1},
	)
	s := out.String()
	if !strings.Contains(s, "[==============>               ]") || !strings.Contains(s, "1kB/2kB") {
		t.Errorf("no half-full bar with bytes in:\n%q", s)
	}
	screen := playTerminal(s)
	want := []string{"0123456789ab: Pull complete", "unpacked into overlayfs: 1 of 1 layers extracted"}
	if strings.Join(screen, "\n") != strings.Join(want, "\n") {
		t.Errorf("terminal shows\n%s\nwant\n%s", strings.Join(screen, "\n"), strings.Join(want, "\n"))
	}
}

// playTerminal plays output on a minimal terminal: lines, cursor up, clear line.
func playTerminal(s string) []string {
	var lines []string
	row := 0
	for len(s) > 0 {
		switch {
		case strings.HasPrefix(s, "\033["):
			end := strings.IndexAny(s, "AK")
			if s[end] == 'A' {
				n := 0
				for _, c := range s[2:end] {
					n = n*10 + int(c-'0')
				}
				row -= n
			} else if row < len(lines) {
				lines[row] = ""
			}
			s = s[end+1:]
		default:
			nl := strings.IndexByte(s, '\n')
			for len(lines) <= row {
				lines = append(lines, "")
			}
			esc := strings.Index(s[:nl], "\033[")
			if esc >= 0 {
				lines[row] += s[:esc]
				s = s[esc:]
				continue
			}
			lines[row] += s[:nl]
			row++
			s = s[nl+1:]
		}
	}
	return lines
}

func TestLoginFileKeepsOtherKeysAndIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "config.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"auths":{"other.example:5000":{"auth":"eDp5"}},"psFormat":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := saveLogin(path, "docker.io", auth.Credential{Username: "u", Password: "p:w"}); err != nil {
		t.Fatal(err)
	}
	if err := saveLogin(path, "127.0.0.1:5000", auth.Credential{Username: "a", Password: "b"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode %v (%v), want 0600", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || string(raw["psFormat"]) != `"x"` {
		t.Errorf("other keys lost: %s", data)
	}
	s, err := auth.LoadDockerConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Get("registry-1.docker.io"); c.Username != "u" || c.Password != "p:w" {
		t.Errorf("docker.io login read back as %v", c)
	}
	if !strings.Contains(string(data), dockerHubKey) {
		t.Errorf("docker.io not stored under Docker's key:\n%s", data)
	}
	if c := s.Get("other.example:5000"); c.Username != "x" {
		t.Errorf("existing login lost: %v", c)
	}
	removed, err := removeLogin(path, "127.0.0.1:5000")
	if err != nil || !removed {
		t.Fatalf("logout: %v %v", removed, err)
	}
	if removed, _ := removeLogin(path, "127.0.0.1:5000"); removed {
		t.Error("second logout removed something")
	}
	if s, _ := auth.LoadDockerConfig(path); !s.Get("127.0.0.1:5000").IsEmpty() || s.Get("docker.io").IsEmpty() {
		t.Errorf("logout removed the wrong login")
	}
}

func TestCredentialsPreferBerthsFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvConfig, filepath.Join(dir, "berth.json"))
	t.Setenv(EnvDockerConfig, filepath.Join(dir, "docker"))
	if err := os.MkdirAll(filepath.Join(dir, "docker"), 0o700); err != nil {
		t.Fatal(err)
	}
	docker := `{"auths":{"r.example":{"auth":"ZG9ja2VyOnB3"},"d.example":{"auth":"ZDpwdw=="}}}` // docker:pw, d:pw
	if err := os.WriteFile(filepath.Join(dir, "docker", "config.json"), []byte(docker), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := saveLogin(filepath.Join(dir, "berth.json"), "r.example", auth.Credential{Username: "berth", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	c, err := loadCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.get("r.example").Username; got != "berth" {
		t.Errorf("r.example user %q, want berth's file to win", got)
	}
	if got := c.get("d.example").Username; got != "d" {
		t.Errorf("d.example user %q, want Docker's login", got)
	}
	if !c.get("nowhere.example").IsEmpty() {
		t.Error("credentials for an unknown host")
	}
	resp := authResponse(c.get("r.example"))
	if resp.AuthType != transfertypes.AuthType_CREDENTIALS || resp.Username != "berth" || resp.Secret != "pw" {
		t.Errorf("auth response %v", resp)
	}
	if authResponse(auth.Credential{}).AuthType != transfertypes.AuthType_NONE {
		t.Error("anonymous answered with credentials")
	}
}
