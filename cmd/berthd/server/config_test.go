package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/plugins"
)

type testPluginConfig struct {
	Size  int    `toml:"size"`
	Label string `toml:"label"`
}

func init() {
	plugins.Register(&plugins.Registration{
		Type:   plugins.InternalPlugin,
		ID:     "configtest",
		Config: &testPluginConfig{Size: 7, Label: "default"},
		InitFn: func(*plugins.InitContext) (any, error) { return nil, nil },
	})
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMissingDefaultFileMeansDefaults(t *testing.T) {
	c, err := LoadConfig(filepath.Join(t.TempDir(), "none.toml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != DefaultRoot || c.GRPC.Address != DefaultAddress || c.TTRPCAddress() != DefaultAddress+".ttrpc" {
		t.Errorf("defaults not applied: %+v", c)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "none.toml"), true); err == nil {
		t.Error("a missing file named explicitly must be an error")
	}
}

func TestPluginSectionDecoded(t *testing.T) {
	p := writeConfig(t, "version = 1\n[plugins.\"io.containerd.internal.v1.configtest\"]\nsize = 42\n")
	c, err := LoadConfig(p, true)
	if err != nil {
		t.Fatal(err)
	}
	pc := c.Plugins["io.containerd.internal.v1.configtest"].(*testPluginConfig)
	if pc.Size != 42 || pc.Label != "default" {
		t.Errorf("plugin config = %+v, want size 42 over the defaults", pc)
	}
	fresh := DefaultConfig().Plugins["io.containerd.internal.v1.configtest"].(*testPluginConfig)
	if fresh.Size != 7 {
		t.Error("decoding a file must not change the registration's defaults")
	}
}

func TestConfigErrorsNameFileLineAndKey(t *testing.T) {
	for name, c := range map[string]struct{ body, want string }{
		"unknown top key":    {"version = 1\nroots = '/x'\n", ":2:1: unknown key \"roots\""},
		"unknown nested key": {"version = 1\n[grpc]\nadress = 'x'\n", ":3:1: unknown key \"grpc.adress\""},
		"unknown plugin key": {"version = 1\n[plugins.\"io.containerd.internal.v1.configtest\"]\nsise = 1\n", `unknown key "plugins.io.containerd.internal.v1.configtest.sise"`},
		"unknown plugin":     {"version = 1\n[plugins.\"io.nope.v1.x\"]\na = 1\n", `unknown key "plugins.io.nope.v1.x`},
		"wrong type":         {"version = 1\nroot = 5\n", `:2:8: key "root": a TOML integer cannot be used here: the value must be of type string`},
		"wrong plugin type":  {"version = 1\n[plugins.\"io.containerd.internal.v1.configtest\"]\nsize = 'big'\n", `must be of type int`},
		"bad syntax":         {"version = 1\nroot = \n", ":2:"},
		"relative root":      {"version = 1\nroot = 'x'\n", "root must be an absolute path"},
		"bad version":        {"version = 3\n", "version 3 is not supported"},
		"unknown required":   {"version = 1\nrequired_plugins = ['io.x.v1.y']\n", `required_plugins: unknown plugin "io.x.v1.y"`},
		"unknown disabled":   {"version = 1\ndisabled_plugins = ['io.x.v1.y']\n", `disabled_plugins: unknown plugin "io.x.v1.y"`},
		"bad log level":      {"version = 1\n[debug]\nlevel = 'loud'\n", "debug.level"},
		"bad proxy type":     {"version = 1\n[proxy_plugins.p]\ntype = 'x'\naddress = '/a'\n", `proxy_plugins.p: type "x"`},
	} {
		t.Run(name, func(t *testing.T) {
			p := writeConfig(t, c.body)
			_, err := LoadConfig(p, true)
			if err == nil {
				t.Fatalf("no error for %q", c.body)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if strings.HasPrefix(c.want, ":") && !strings.HasPrefix(err.Error(), p+":") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestDefaultConfigRoundTrips(t *testing.T) {
	out, err := DefaultConfig().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"root = '/var/lib/berth'", "[grpc]", "address = '/run/berth/berth.sock'", `[plugins.'io.containerd.internal.v1.configtest']`, "size = 7"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("default config lacks %q:\n%s", want, out)
		}
	}
	c, err := LoadConfig(writeConfig(t, string(out)), true)
	if err != nil {
		t.Fatalf("the default config does not load back: %v", err)
	}
	if c.Root != DefaultRoot {
		t.Errorf("round trip changed root to %q", c.Root)
	}
}
