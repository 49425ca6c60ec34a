package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/berthd/berth/plugins"
)

// Standard locations. Every one is a flag and a config key so tests can run
// many daemons side by side.
const (
	DefaultConfigPath = "/etc/berth/config.toml"
	DefaultRoot       = "/var/lib/berth"
	DefaultState      = "/run/berth"
	DefaultAddress    = "/run/berth/berth.sock"
)

// Config is berthd's configuration file.
type Config struct {
	Version         int      `toml:"version" comment:"Configuration format version."`
	Root            string   `toml:"root" comment:"Persistent data: metadata, content, snapshots, volumes."`
	State           string   `toml:"state" comment:"Runtime state lost at reboot: sockets, shim bundles, netns mounts."`
	DisabledPlugins []string `toml:"disabled_plugins" comment:"Plugins (\"<type>.<id>\") that are not initialised."`
	RequiredPlugins []string `toml:"required_plugins" comment:"Plugins that must initialise, or berthd exits."`

	GRPC  GRPCConfig  `toml:"grpc"`
	TTRPC TTRPCConfig `toml:"ttrpc"`
	Debug DebugConfig `toml:"debug"`

	// ProxyPlugins connects plugins served by other processes over the
	// containerd gRPC API.
	ProxyPlugins map[string]ProxyPlugin `toml:"proxy_plugins" comment:"External plugins: [proxy_plugins.<name>] type = \"snapshot\" | \"content\", address = \"/path/to.sock\"."`

	// Plugins holds each plugin's decoded configuration by URI.
	Plugins map[string]any `toml:"-"`
}

// GRPCConfig is the main API socket.
type GRPCConfig struct {
	Address        string `toml:"address" comment:"Unix socket of the gRPC API (containerd v1 API, berth's services, CRI)."`
	UID            int    `toml:"uid" comment:"Owner of the socket."`
	GID            int    `toml:"gid" comment:"Group of the socket; members may use berth (mode 0660)."`
	MaxRecvMsgSize int    `toml:"max_recv_message_size"`
	MaxSendMsgSize int    `toml:"max_send_message_size"`
}

// TTRPCConfig is the socket shims publish events on.
type TTRPCConfig struct {
	Address string `toml:"address" comment:"Unix socket for shims; empty means <grpc.address>.ttrpc."`
}

// DebugConfig controls logging and the debug endpoint.
type DebugConfig struct {
	Address string `toml:"address" comment:"Loopback TCP address (e.g. 127.0.0.1:9341) serving /debug/pprof and /metrics; empty disables it."`
	Level   string `toml:"level" comment:"Log level: debug, info, warn, error."`
	Format  string `toml:"format" comment:"Log format: text or json."`
}

// ProxyPlugin is one external plugin.
type ProxyPlugin struct {
	Type    string `toml:"type"`
	Address string `toml:"address"`
}

// DefaultConfig returns the configuration berthd runs with when there is no
// file: every plugin section holds its registration's defaults.
func DefaultConfig() *Config {
	return &Config{
		Version:         1,
		Root:            DefaultRoot,
		State:           DefaultState,
		DisabledPlugins: []string{},
		RequiredPlugins: []string{},
		GRPC: GRPCConfig{
			Address:        DefaultAddress,
			MaxRecvMsgSize: 16 << 20,
			MaxSendMsgSize: 16 << 20,
		},
		Debug:        DebugConfig{Level: "info", Format: "text"},
		ProxyPlugins: map[string]ProxyPlugin{},
		Plugins:      pluginDefaults(),
	}
}

func pluginDefaults() map[string]any {
	out := map[string]any{}
	for _, r := range plugins.Registrations() {
		if r.Config == nil {
			continue
		}
		// Copy the registration's defaults so decoding a file never
		// changes them.
		v := reflect.ValueOf(r.Config)
		c := reflect.New(v.Type().Elem())
		c.Elem().Set(v.Elem())
		out[r.URI()] = c.Interface()
	}
	return out
}

// TTRPCAddress is the ttrpc socket path.
func (c *Config) TTRPCAddress() string {
	if c.TTRPC.Address != "" {
		return c.TTRPC.Address
	}
	return c.GRPC.Address + ".ttrpc"
}

// fileShape builds a struct type mirroring the whole file: Config's fields
// plus a "plugins" table with one typed field per plugin section. Decoding
// into it with unknown fields disallowed catches a misspelt key anywhere,
// plugin sections included, with its line.
func fileShape(c *Config) (reflect.Type, []string) {
	uris := make([]string, 0, len(c.Plugins))
	for u := range c.Plugins {
		uris = append(uris, u)
	}
	sort.Strings(uris)
	var pluginFields []reflect.StructField
	for i, u := range uris {
		pluginFields = append(pluginFields, reflect.StructField{
			Name: fmt.Sprintf("P%d", i),
			Type: reflect.TypeOf(c.Plugins[u]),
			Tag:  reflect.StructTag(fmt.Sprintf("toml:%q", u)),
		})
	}
	fields := []reflect.StructField{
		{Name: "Config", Type: reflect.TypeOf(Config{}), Anonymous: true},
		{Name: "PluginSections", Type: reflect.StructOf(pluginFields), Tag: `toml:"plugins"`},
	}
	return reflect.StructOf(fields), uris
}

func (c *Config) toShape() (reflect.Value, []string) {
	t, uris := fileShape(c)
	v := reflect.New(t)
	v.Elem().Field(0).Set(reflect.ValueOf(*c))
	sections := v.Elem().Field(1)
	for i, u := range uris {
		sections.Field(i).Set(reflect.ValueOf(c.Plugins[u]))
	}
	return v, uris
}

func (c *Config) fromShape(v reflect.Value, uris []string) {
	plugins := c.Plugins
	*c = v.Elem().Field(0).Interface().(Config)
	c.Plugins = plugins
	sections := v.Elem().Field(1)
	for i, u := range uris {
		c.Plugins[u] = sections.Field(i).Interface()
	}
}

var typeMismatch = regexp.MustCompile(`cannot decode TOML (\w+) into .* of type (\S+)`)

// LoadConfig reads path over the defaults. A missing file at the default
// path means defaults; a missing file named explicitly is an error.
func LoadConfig(path string, explicit bool) (*Config, error) {
	c := DefaultConfig()
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) && !explicit {
			return c, nil
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := c.decode(path, data); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

func (c *Config) decode(path string, data []byte) error {
	v, uris := c.toShape()
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Interface()); err != nil {
		return describeDecodeError(path, err)
	}
	c.fromShape(v, uris)
	return nil
}

func describeDecodeError(path string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		var msgs []string
		for _, e := range strict.Errors {
			row, col := e.Position()
			msgs = append(msgs, fmt.Sprintf("%s:%d:%d: unknown key %q", path, row, col, strings.Join(e.Key(), ".")))
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		msg := de.Error()
		// The decoder names the Go type it decodes into, which means
		// nothing to someone editing the file: say what the key wants.
		if m := typeMismatch.FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("a TOML %s cannot be used here: the value must be of type %s", m[1], m[2])
		}
		if key := strings.Join(de.Key(), "."); key != "" {
			return fmt.Errorf("%s:%d:%d: key %q: %s", path, row, col, key, msg)
		}
		return fmt.Errorf("%s:%d:%d: %s", path, row, col, msg)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// Validate checks values the decoder cannot.
func (c *Config) Validate() error {
	if c.Version != 1 {
		return fmt.Errorf("config version %d is not supported (only 1)", c.Version)
	}
	for _, f := range []struct{ name, v string }{{"root", c.Root}, {"state", c.State}, {"grpc.address", c.GRPC.Address}} {
		if f.v == "" || !strings.HasPrefix(f.v, "/") {
			return fmt.Errorf("config %s must be an absolute path, got %q", f.name, f.v)
		}
	}
	known := map[string]bool{}
	for _, r := range plugins.Registrations() {
		known[r.URI()] = true
	}
	for name, p := range c.ProxyPlugins {
		switch p.Type {
		case "snapshot", "content":
		default:
			return fmt.Errorf("proxy_plugins.%s: type %q is not supported (snapshot or content)", name, p.Type)
		}
		if p.Address == "" {
			return fmt.Errorf("proxy_plugins.%s: address is required", name)
		}
		known[proxyURI(name, p)] = true
	}
	for _, r := range c.RequiredPlugins {
		if !known[r] {
			return fmt.Errorf("required_plugins: unknown plugin %q (see 'berth plugins ls' for names)", r)
		}
	}
	for _, d := range c.DisabledPlugins {
		if !known[d] {
			return fmt.Errorf("disabled_plugins: unknown plugin %q (see 'berth plugins ls' for names)", d)
		}
	}
	switch c.Debug.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("debug.level %q is not one of debug, info, warn, error", c.Debug.Level)
	}
	switch c.Debug.Format {
	case "text", "json":
	default:
		return fmt.Errorf("debug.format %q is not text or json", c.Debug.Format)
	}
	return nil
}

func proxyURI(name string, p ProxyPlugin) string {
	switch p.Type {
	case "snapshot":
		return string(plugins.SnapshotPlugin) + "." + name
	case "content":
		return string(plugins.ContentPlugin) + "." + name
	}
	return name
}

// Marshal renders the configuration as TOML, plugin sections included.
func (c *Config) Marshal() ([]byte, error) {
	v, _ := c.toShape()
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(true)
	if err := enc.Encode(v.Interface()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
