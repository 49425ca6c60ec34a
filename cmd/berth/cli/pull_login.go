package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/core/remotes/auth"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/berthd/berth/core/transfer"
)

// Where logins are kept. berth writes its own file, in Docker's
// config.json format, rather than Docker's: Docker's file may hand hosts
// to credential helpers and is rewritten by Docker, so berth never edits a
// file another tool owns; it reads Docker's too, so existing `docker
// login`s work.
const (
	// EnvConfig names berth's credentials file.
	EnvConfig = "BERTH_CONFIG"
	// EnvDockerConfig names Docker's configuration folder.
	EnvDockerConfig = "DOCKER_CONFIG"
)

// dockerHubKey is the key Docker stores docker.io logins under.
const dockerHubKey = "https://index.docker.io/v1/"

// berthConfigPath is $BERTH_CONFIG, else $XDG_CONFIG_HOME/berth/config.json,
// else ~/.config/berth/config.json.
func berthConfigPath() (string, error) {
	if p := os.Getenv(EnvConfig); p != "" {
		return p, nil
	}
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "berth", "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find berth's credentials file: %w (set %s)", err, EnvConfig)
	}
	return filepath.Join(home, ".config", "berth", "config.json"), nil
}

// dockerConfigPath is $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
func dockerConfigPath() string {
	if d := os.Getenv(EnvDockerConfig); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

// credentials are the logins the CLI knows, sent to berthd per request
// when a registry asks.
type credentials struct {
	stores []*auth.Store // berth's first
}

// loadCredentials reads berth's file and Docker's; a missing file is no
// logins, an unreadable one an error naming it.
func loadCredentials() (*credentials, error) {
	c := &credentials{}
	bp, err := berthConfigPath()
	if err != nil {
		return nil, err
	}
	for _, p := range []string{bp, dockerConfigPath()} {
		if p == "" {
			continue
		}
		s, err := auth.LoadDockerConfig(p)
		if err != nil {
			return nil, err
		}
		c.stores = append(c.stores, s)
	}
	return c, nil
}

func (c *credentials) get(host string) auth.Credential {
	for _, s := range c.stores {
		if cred := s.Get(host); !cred.IsEmpty() {
			return cred
		}
	}
	return auth.Credential{}
}

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(loginCommand(g), logoutCommand(g))
	})
}

func loginCommand(g *globals) *cobra.Command {
	var user, password, hostDir string
	var passwordStdin, plainHTTP bool
	cmd := &cobra.Command{
		Use:     "login [-u USER] [--password-stdin] [REGISTRY]",
		Short:   "check and store credentials for a registry (default docker.io)",
		GroupID: "images",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host := "docker.io"
			if len(args) == 1 {
				host = auth.NormalizeHost(args[0])
			}
			if host == "" {
				return usageError("registry %q: no host", args[0])
			}
			cred, err := readLogin(g, user, password, passwordStdin)
			if err != nil {
				return err
			}
			if password != "" {
				fmt.Fprintln(g.stderr, "WARNING! Using --password on the command line is insecure: use --password-stdin.")
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			if hostDir == "" {
				hostDir = daemonHostDir(ctx, g)
			}
			store := auth.NewStore()
			if err := store.Set(host, cred); err != nil {
				return err
			}
			r := remotes.NewResolver(remotes.Options{Credentials: store, Hosts: hosts.Options{ConfigDir: hostDir, PlainHTTP: plainHTTP}})
			if err := r.Login(ctx, host); err != nil {
				return fmt.Errorf("login to %s: %w", host, err)
			}
			path, err := berthConfigPath()
			if err != nil {
				return err
			}
			if err := saveLogin(path, host, cred); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Login Succeeded (credentials stored in %s)\n", path)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&user, "username", "u", "", "user name (asked for on a terminal when not given)")
	fl.StringVarP(&password, "password", "p", "", "password (insecure: prefer --password-stdin)")
	fl.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	fl.BoolVar(&plainHTTP, "plain-http", false, "talk to the registry over plain HTTP")
	fl.StringVar(&hostDir, "hosts-dir", "", "registry hosts configuration root (default: berthd's config_path)")
	return cmd
}

// readLogin gathers user and password from flags, stdin or the terminal.
func readLogin(g *globals, user, password string, fromStdin bool) (auth.Credential, error) {
	if fromStdin && password != "" {
		return auth.Credential{}, usageError("--password and --password-stdin are exclusive")
	}
	in, isTTY := g.stdin, false
	if f, ok := g.stdin.(*os.File); ok {
		isTTY = term.IsTerminal(int(f.Fd()))
	}
	if user == "" {
		if !isTTY || fromStdin {
			return auth.Credential{}, usageError("give the user name with -u (no terminal to ask on)")
		}
		fmt.Fprint(g.stderr, "Username: ")
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return auth.Credential{}, err
		}
		user = strings.TrimSpace(line)
	}
	switch {
	case fromStdin:
		data, err := io.ReadAll(io.LimitReader(in, 64<<10))
		if err != nil {
			return auth.Credential{}, err
		}
		password = strings.TrimRight(string(data), "\r\n")
	case password == "" && isTTY:
		fmt.Fprint(g.stderr, "Password: ")
		b, err := term.ReadPassword(int(in.(*os.File).Fd()))
		fmt.Fprintln(g.stderr)
		if err != nil {
			return auth.Credential{}, err
		}
		password = string(b)
	}
	if user == "" || password == "" {
		return auth.Credential{}, usageError("user name and password must not be empty")
	}
	return auth.Credential{Username: user, Password: password}, nil
}

// daemonHostDir asks berthd where its hosts.toml tree is, so that login
// checks the registry with the same TLS and mirror settings pulls use;
// without berthd, the default.
func daemonHostDir(ctx context.Context, g *globals) string {
	c, err := g.dial()
	if err != nil {
		return transfer.DefaultHostDir
	}
	resp, err := introspectionapi.NewIntrospectionClient(c.Conn()).Plugins(ctx, &introspectionapi.PluginsRequest{
		Filters: []string{"type==io.containerd.transfer.v1,id==local"},
	})
	if err == nil {
		for _, p := range resp.Plugins {
			if d := p.Exports["config_path"]; d != "" {
				return d
			}
		}
	}
	return transfer.DefaultHostDir
}

func logoutCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "logout [REGISTRY]",
		Short:   "remove stored credentials for a registry (default docker.io)",
		GroupID: "images",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host := "docker.io"
			if len(args) == 1 {
				host = auth.NormalizeHost(args[0])
			}
			path, err := berthConfigPath()
			if err != nil {
				return err
			}
			removed, err := removeLogin(path, host)
			if err != nil {
				return err
			}
			if removed {
				fmt.Fprintf(g.stdout, "Removing login credentials for %s\n", host)
				return nil
			}
			if dp := dockerConfigPath(); dp != "" {
				if s, err := auth.LoadDockerConfig(dp); err == nil && !s.Get(host).IsEmpty() {
					return fmt.Errorf("not logged in to %s with berth; the credentials in %s are Docker's, which berth does not change (use docker logout)", host, dp)
				}
			}
			fmt.Fprintf(g.stdout, "Not logged in to %s\n", host)
			return nil
		},
	}
}

// configFile is berth's credentials file: Docker's format, other keys kept
// as they are.
type configFile struct {
	raw   map[string]json.RawMessage
	auths map[string]json.RawMessage
}

func readConfigFile(path string) (*configFile, error) {
	cf := &configFile{raw: map[string]json.RawMessage{}, auths: map[string]json.RawMessage{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cf, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &cf.raw); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %v", path, err)
	}
	if a, ok := cf.raw["auths"]; ok {
		if err := json.Unmarshal(a, &cf.auths); err != nil {
			return nil, fmt.Errorf("%s: auths: %v", path, err)
		}
	}
	return cf, nil
}

// write replaces the file atomically, readable by its owner only.
func (cf *configFile) write(path string) error {
	auths, err := json.Marshal(cf.auths)
	if err != nil {
		return err
	}
	cf.raw["auths"] = auths
	data, err := json.MarshalIndent(cf.raw, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// keysFor lists the file's auth keys that name host.
func (cf *configFile) keysFor(host string) []string {
	var out []string
	for k := range cf.auths {
		if auth.NormalizeHost(k) == host {
			out = append(out, k)
		}
	}
	return out
}

func saveLogin(path, host string, c auth.Credential) error {
	cf, err := readConfigFile(path)
	if err != nil {
		return err
	}
	for _, k := range cf.keysFor(host) {
		delete(cf.auths, k)
	}
	key := host
	if host == "docker.io" {
		key = dockerHubKey
	}
	entry, err := json.Marshal(map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))})
	if err != nil {
		return err
	}
	cf.auths[key] = entry
	if err := cf.write(path); err != nil {
		return fmt.Errorf("store credentials in %s: %w", path, err)
	}
	return nil
}

func removeLogin(path, host string) (bool, error) {
	cf, err := readConfigFile(path)
	if err != nil {
		return false, err
	}
	keys := cf.keysFor(host)
	if len(keys) == 0 {
		return false, nil
	}
	for _, k := range keys {
		delete(cf.auths, k)
	}
	if err := cf.write(path); err != nil {
		return false, fmt.Errorf("remove credentials from %s: %w", path, err)
	}
	return true, nil
}
