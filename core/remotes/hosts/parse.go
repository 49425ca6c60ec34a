package hosts

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// FileName is the name of the configuration file in a namespace folder.
const FileName = "hosts.toml"

// maxFileSize bounds hosts.toml before it is read into memory.
const maxFileSize = 1 << 20

// config is one namespace folder's configuration.
type config struct {
	// server carries the root-level settings; its Host is empty when the
	// file names no server.
	server  *Endpoint
	mirrors []Endpoint
}

// rawHost is the TOML shape shared by the root table and [host."…"] tables.
type rawHost struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

type rawFile struct {
	Server string `toml:"server"`
	rawHost
	Host map[string]rawHost `toml:"host"`
}

// loadDir reads a namespace folder: hosts.toml when present, else Docker's
// certificate files.
func loadDir(dir string) (*config, error) {
	file := filepath.Join(dir, FileName)
	data, err := readBounded(file)
	if os.IsNotExist(err) {
		return loadCertFiles(dir)
	}
	if err != nil {
		return nil, err
	}
	return parseFile(file, data)
}

func readBounded(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("%s: %d bytes, over the %d byte limit: %w", file, fi.Size(), maxFileSize, errdefs.ErrInvalidArgument)
	}
	return os.ReadFile(file)
}

// parseFile decodes the hosts.toml at file (relative paths in it are relative
// to its folder). Errors name the file, and the key or line at fault.
func parseFile(file string, data []byte) (*config, error) {
	var raw rawFile
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, decodeError(file, err)
	}
	order, err := hostOrder(data)
	if err != nil {
		return nil, decodeError(file, err)
	}
	base := filepath.Dir(file)
	cfg := &config{}
	for _, name := range order {
		ep, err := parseHost(base, name, raw.Host[name])
		if err != nil {
			return nil, fmt.Errorf("%s: host.%q.%w", file, name, err)
		}
		cfg.mirrors = append(cfg.mirrors, ep)
	}
	server, err := parseHost(base, raw.Server, raw.rawHost)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	cfg.server = &server
	return cfg, nil
}

// decodeError turns go-toml errors into one naming file, line and key.
func decodeError(file string, err error) error {
	var missing *toml.StrictMissingError
	if errors.As(err, &missing) {
		var keys []string
		for _, e := range missing.Errors {
			row, _ := e.Position()
			keys = append(keys, fmt.Sprintf("%s (line %d)", strings.Join(e.Key(), "."), row))
		}
		return fmt.Errorf("%s: unknown key %s: %w", file, strings.Join(keys, ", "), errdefs.ErrInvalidArgument)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		where := fmt.Sprintf("line %d column %d", row, col)
		if k := de.Key(); len(k) > 0 {
			where += " key " + strings.Join(k, ".")
		}
		return fmt.Errorf("%s: %s: %v: %w", file, where, de, errdefs.ErrInvalidArgument)
	}
	var pe *unstable.ParserError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v: %w", file, pe, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("%s: %w: %w", file, err, errdefs.ErrInvalidArgument)
}

// hostOrder lists the [host."…"] names in the order they first appear in
// the file, which is the order mirrors are tried in; a TOML map alone would
// lose it.
func hostOrder(data []byte) ([]string, error) {
	var p unstable.Parser
	p.Reset(data)
	var names []string
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.Table && e.Kind != unstable.KeyValue {
			continue
		}
		key := e.Key()
		if !key.Next() || string(key.Node().Data) != "host" {
			continue
		}
		if key.Next() {
			names = appendNew(names, string(key.Node().Data))
			continue
		}
		// host = { "https://a" = {…}, … } as an inline table.
		if v := e.Value(); v != nil && v.Kind == unstable.InlineTable {
			kids := v.Children()
			for kids.Next() {
				k := kids.Node().Key()
				if k.Next() {
					names = appendNew(names, string(k.Node().Data))
				}
			}
		}
	}
	return names, p.Error()
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// parseHost turns one table into an Endpoint; server may be empty for the
// root table when no server is named. Errors start with the key at fault.
func parseHost(base, server string, h rawHost) (Endpoint, error) {
	var e Endpoint
	if server != "" {
		if err := parseServer(&e, server, h.OverridePath); err != nil {
			return Endpoint{}, err
		}
	}
	var err error
	if e.Capabilities, err = parseCapabilities(h.Capabilities); err != nil {
		return Endpoint{}, err
	}
	if h.SkipVerify != nil {
		e.SkipVerify = *h.SkipVerify
	}
	if e.CACerts, err = parseCA(base, h.CA); err != nil {
		return Endpoint{}, err
	}
	if e.ClientCerts, err = parseClient(base, h.Client); err != nil {
		return Endpoint{}, err
	}
	if e.Header, err = parseHeader(h.Header); err != nil {
		return Endpoint{}, err
	}
	if h.DialTimeout != "" {
		if e.DialTimeout, err = time.ParseDuration(h.DialTimeout); err != nil || e.DialTimeout < 0 {
			return Endpoint{}, fmt.Errorf("dial_timeout: %q is not a duration: %w", h.DialTimeout, errdefs.ErrInvalidArgument)
		}
	}
	// An http:// entry that carries TLS settings is meant to be HTTPS; try
	// that first, as containerd does, unless it is on port 80.
	tlsSet := h.CA != nil || h.Client != nil || h.SkipVerify != nil
	if e.Scheme == "http" && tlsSet {
		if _, port, _ := net.SplitHostPort(e.Host); port != "80" {
			e.Scheme, e.HTTPFallback = "https", true
		}
	}
	return e, nil
}

// parseServer fills scheme, host and API path from a server URL.
func parseServer(e *Endpoint, server string, overridePath bool) error {
	raw := server
	if !strings.HasPrefix(server, "http://") && !strings.HasPrefix(server, "https://") {
		if strings.Contains(server, "://") {
			return fmt.Errorf("server: %q: scheme must be http or https: %w", raw, errdefs.ErrInvalidArgument)
		}
		server = "https://" + server
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return fmt.Errorf("server: %q is not a URL: %w", raw, errdefs.ErrInvalidArgument)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("server: %q: query, fragment and user info are not allowed: %w", raw, errdefs.ErrInvalidArgument)
	}
	e.Scheme, e.Host = u.Scheme, u.Host
	p := ""
	if u.Path != "" && u.Path != "/" {
		p = path.Clean(u.Path)
	}
	if !overridePath && !strings.HasSuffix(p, "/v2") {
		p += "/v2"
	}
	e.Path = p
	return nil
}

func parseCapabilities(names []string) (Capabilities, error) {
	if len(names) == 0 {
		return CapAll, nil
	}
	var c Capabilities
	for _, n := range names {
		i := slices.IndexFunc(capabilityNames, func(cn struct {
			name string
			cap  Capabilities
		}) bool {
			return strings.EqualFold(cn.name, n)
		})
		if i < 0 {
			return 0, fmt.Errorf("capabilities: unknown capability %q (want pull, resolve or push): %w", n, errdefs.ErrInvalidArgument)
		}
		c |= capabilityNames[i].cap
	}
	return c, nil
}

// parseCA accepts a path or a list of paths.
func parseCA(base string, v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{absPath(base, v)}, nil
	case []any:
		out, err := stringList("ca", v)
		for i := range out {
			out[i] = absPath(base, out[i])
		}
		return out, err
	default:
		return nil, fmt.Errorf("ca: want a path or a list of paths, got %T: %w", v, errdefs.ErrInvalidArgument)
	}
}

// parseClient accepts a path, a list of paths, or a list of [cert, key]
// pairs; a lone path holds both certificate and key.
func parseClient(base string, v any) ([][2]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return [][2]string{{absPath(base, v), ""}}, nil
	case []any:
		var out [][2]string
		for i, item := range v {
			pair, err := clientPair(base, item)
			if err != nil {
				return nil, fmt.Errorf("client[%d]: %w", i, err)
			}
			out = append(out, pair)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("client: want a path or a list, got %T: %w", v, errdefs.ErrInvalidArgument)
	}
}

func clientPair(base string, item any) ([2]string, error) {
	switch item := item.(type) {
	case string:
		return [2]string{absPath(base, item), ""}, nil
	case []any:
		list, err := stringList("pair", item)
		if err != nil {
			return [2]string{}, err
		}
		if len(list) != 2 {
			return [2]string{}, fmt.Errorf("want [certificate, key], got %d items: %w", len(list), errdefs.ErrInvalidArgument)
		}
		pair := [2]string{absPath(base, list[0]), ""}
		if list[1] != "" {
			pair[1] = absPath(base, list[1])
		}
		return pair, nil
	default:
		return [2]string{}, fmt.Errorf("want a path or a [certificate, key] pair, got %T: %w", item, errdefs.ErrInvalidArgument)
	}
}

func parseHeader(h map[string]any) (http.Header, error) {
	if len(h) == 0 {
		return nil, nil
	}
	out := make(http.Header, len(h))
	for k, v := range h {
		switch v := v.(type) {
		case string:
			out[http.CanonicalHeaderKey(k)] = []string{v}
		case []any:
			list, err := stringList("header."+k, v)
			if err != nil {
				return nil, err
			}
			out[http.CanonicalHeaderKey(k)] = list
		default:
			return nil, fmt.Errorf("header.%s: want a string or a list of strings, got %T: %w", k, v, errdefs.ErrInvalidArgument)
		}
	}
	return out, nil
}

func stringList(key string, v []any) ([]string, error) {
	out := make([]string, len(v))
	for i, item := range v {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: want a string, got %T: %w", key, i, item, errdefs.ErrInvalidArgument)
		}
		out[i] = s
	}
	return out, nil
}

func absPath(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// loadCertFiles reads Docker's certs.d convention: *.crt files are CA
// certificates, *.cert files client certificates with the key in the
// matching *.key file (or in the .cert file itself when there is none).
func loadCertFiles(dir string) (*config, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("registry hosts folder %s: %w", dir, err)
	}
	server := &Endpoint{}
	for _, ent := range entries {
		if ent.IsDir() {
			continue
		}
		name := ent.Name()
		switch {
		case strings.HasSuffix(name, ".crt"):
			server.CACerts = append(server.CACerts, filepath.Join(dir, name))
		case strings.HasSuffix(name, ".cert"):
			pair := [2]string{filepath.Join(dir, name), ""}
			key := filepath.Join(dir, strings.TrimSuffix(name, ".cert")+".key")
			if _, err := os.Stat(key); err == nil {
				pair[1] = key
			}
			server.ClientCerts = append(server.ClientCerts, pair)
		}
	}
	return &config{server: server}, nil
}
