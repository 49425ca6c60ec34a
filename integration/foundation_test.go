package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	introspection "github.com/containerd/containerd/api/services/introspection/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	nsapi "github.com/containerd/containerd/api/services/namespaces/v1"

	"github.com/berthd/berth/internal/testutil/daemon"
)

func TestVersionThroughBerthAndCtr(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	out := d.MustBerth("version")
	if !strings.Contains(out, "Client:") || !strings.Contains(out, "Server:") {
		t.Errorf("berth version:\n%s", out)
	}
	var v struct {
		Client, Server struct{ Version string }
	}
	if err := json.Unmarshal([]byte(d.MustBerth("version", "--format", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Server.Version == "" || v.Server.Version != v.Client.Version {
		t.Errorf("versions: %+v", v)
	}
	ctr := d.MustCtr("version")
	if !strings.Contains(ctr, "Server:") || !strings.Contains(ctr, "Version:  "+v.Server.Version) || !strings.Contains(ctr, "UUID: ") {
		t.Errorf("ctr version does not show berthd's version and UUID:\n%s", ctr)
	}
}

func TestPluginsListed(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	ctr := d.MustCtr("plugins", "ls")
	for _, want := range []string{"io.containerd.metadata.v1", "bolt", "io.containerd.grpc.v1", "introspection", "namespaces", "version"} {
		if !strings.Contains(ctr, want) {
			t.Errorf("ctr plugins ls lacks %q:\n%s", want, ctr)
		}
	}
	var rows []struct{ Type, ID, Status string }
	if err := json.Unmarshal([]byte(d.MustBerth("plugins", "ls", "--format", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rows {
		if r.Type == "io.containerd.metadata.v1" && r.ID == "bolt" && r.Status == "ok" {
			found = true
		}
	}
	if !found {
		t.Errorf("berth plugins ls has no working bolt plugin: %+v", rows)
	}
	filtered := d.MustCtr("plugins", "ls", "type==io.containerd.metadata.v1")
	if strings.Contains(filtered, "introspection") || !strings.Contains(filtered, "bolt") {
		t.Errorf("filtered list:\n%s", filtered)
	}
	table := d.MustBerth("plugins", "ls")
	if !strings.HasPrefix(table, "TYPE") || !strings.Contains(table, "STATUS") {
		t.Errorf("berth plugins ls table:\n%s", table)
	}
}

func TestNamespacesThroughBerthAndCtr(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	d.MustCtr("namespaces", "create", "from-ctr", "team=a")
	d.MustBerth("namespaces", "create", "from-berth", "--label", "team=b")

	ls := d.MustBerth("namespaces", "ls")
	if !strings.Contains(ls, "from-ctr") || !strings.Contains(ls, "team=a") || !strings.Contains(ls, "from-berth") {
		t.Errorf("berth namespaces ls:\n%s", ls)
	}
	ctrLs := d.MustCtr("namespaces", "ls")
	if !strings.Contains(ctrLs, "from-berth") || !strings.Contains(ctrLs, "team=b") {
		t.Errorf("ctr namespaces ls:\n%s", ctrLs)
	}

	d.MustCtr("namespaces", "label", "from-berth", "tier=web")
	d.MustBerth("namespaces", "label", "from-ctr", "team=", "env=prod")
	var rows []struct {
		Name   string
		Labels map[string]string
	}
	if err := json.Unmarshal([]byte(d.MustBerth("namespaces", "ls", "--format", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, r := range rows {
		got[r.Name] = r.Labels
	}
	if got["from-berth"]["tier"] != "web" || got["from-berth"]["team"] != "b" {
		t.Errorf("labels of from-berth: %v", got["from-berth"])
	}
	if _, ok := got["from-ctr"]["team"]; ok || got["from-ctr"]["env"] != "prod" {
		t.Errorf("labels of from-ctr: %v", got["from-ctr"])
	}
	if q := d.MustBerth("ns", "ls", "-q"); q != "from-berth\nfrom-ctr\n" {
		t.Errorf("ls -q: %q", q)
	}

	d.MustCtr("namespaces", "rm", "from-berth")
	d.MustBerth("namespaces", "rm", "from-ctr")
	if ls := d.MustCtr("namespaces", "ls", "-q"); strings.TrimSpace(ls) != "" {
		t.Errorf("namespaces left: %q", ls)
	}
}

func TestNamespaceBadInput(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"namespaces", "create", "bad name"}, `identifier "bad name" must be letters and digits`},
		{[]string{"namespaces", "create", "a..b"}, "must be letters and digits"},
		{[]string{"namespaces", "create", strings.Repeat("n", 77)}, "more than the limit of 76"},
		{[]string{"namespaces", "create", "x", "--label", "=v"}, "key must not be empty"},
		{[]string{"namespaces", "create", "x", "--label", "k=" + strings.Repeat("v", 4100)}, "more than the limit of 4096"},
		{[]string{"namespaces", "rm", "missing"}, `namespace "missing": not found`},
		{[]string{"namespaces", "label", "missing", "a=b"}, `namespace "missing": not found`},
	} {
		r := d.Berth(c.args...)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("berth %s: exit %d, stderr %q, want %q", strings.Join(c.args, " "), r.ExitCode, r.Stderr, c.want)
		}
		if strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
			t.Errorf("berth %s: error is more than one line: %q", strings.Join(c.args, " "), r.Stderr)
		}
	}
	if r := d.Ctr("namespaces", "create", "bad name"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "invalid argument") {
		t.Errorf("ctr namespaces create 'bad name': %+v", r)
	}

	// The API answers with InvalidArgument, not a generic error.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "containerd-namespace", "default")
	_, err := nsapi.NewNamespacesClient(d.Conn()).Create(ctx, &nsapi.CreateNamespaceRequest{Namespace: &nsapi.Namespace{Name: "x", Labels: map[string]string{"": "v"}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty label key over the API: %v", err)
	}
	_, err = nsapi.NewNamespacesClient(d.Conn()).Create(ctx, &nsapi.CreateNamespaceRequest{Namespace: &nsapi.Namespace{Name: "-bad"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad name over the API: %v", err)
	}
	if ls := d.MustBerth("ns", "ls", "-q"); strings.TrimSpace(ls) != "" {
		t.Errorf("failed creates left namespaces: %q", ls)
	}
}

func TestSecondDaemonOnSameRootFailsAtOnce(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	other := filepath.Join(d.Dir, "other")
	cmd := exec.Command(daemon.Binary(t, "berthd"), "--config", d.Config, "--state", other+"-state", "--address", other+".sock")
	done := make(chan struct{})
	var out []byte
	var err error
	start := time.Now()
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("second berthd on the same root hung")
	}
	if err == nil {
		t.Fatal("second berthd on the same root exited 0")
	}
	want := fmt.Sprintf("root %s is in use by another berthd", d.Root)
	if !strings.Contains(string(out), want) {
		t.Errorf("output %q does not say %q", out, want)
	}
	t.Logf("second daemon refused after %s", time.Since(start))
	// The first daemon is unharmed: its socket still answers.
	d.MustBerth("version")

	// Same state, other root: refused too.
	out, err = exec.Command(daemon.Binary(t, "berthd"), "--config", d.Config, "--root", other+"-root", "--address", other+"2.sock").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "state "+d.State+" is in use by another berthd") {
		t.Errorf("second berthd on the same state: %v %s", err, out)
	}
	d.MustBerth("version")
}

func TestConfigErrorsStopBerthd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := daemon.Binary(t, "berthd")
	for name, c := range map[string]struct{ body, want string }{
		"unknown key":      {"version = 1\n[grpc]\nadress = '/x'\n", `config.toml:3:1: unknown key "grpc.adress"`},
		"wrong type":       {"version = 1\n[debug]\nlevel = 3\n", `config.toml:3:9: key "debug.level"`},
		"unknown required": {"version = 1\nrequired_plugins = ['io.nope.v1.x']\n", `unknown plugin "io.nope.v1.x"`},
		"required disabled": {fmt.Sprintf("version = 1\nroot = %q\nstate = %q\nrequired_plugins = ['io.containerd.grpc.v1.version']\ndisabled_plugins = ['io.containerd.grpc.v1.version']\n[grpc]\naddress = %q\n",
			dir+"/r", dir+"/s", dir+"/x.sock"), "required plugin io.containerd.grpc.v1.version is also disabled"},
	} {
		p := filepath.Join(dir, "config.toml")
		os.WriteFile(p, []byte(c.body), 0o644)
		out, err := exec.Command(bin, "--config", p).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: err %v, output %q, want %q", name, err, out, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.sock")); err == nil {
		t.Error("a failed start left its socket behind")
	}
}

func TestConfigDefaultIsComplete(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(daemon.Binary(t, "berthd"), "config", "default").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"root = '/var/lib/berth'", "state = '/run/berth'", "address = '/run/berth/berth.sock'", "[debug]", "required_plugins"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("berthd config default lacks %q", want)
		}
	}
	// The default config, with test paths, runs a daemon.
	body := string(out)
	dir, _ := os.MkdirTemp("", "bt-")
	defer os.RemoveAll(dir)
	body = strings.Replace(body, "'/var/lib/berth'", fmt.Sprintf("%q", dir+"/root"), 1)
	body = strings.Replace(body, "'/run/berth'", fmt.Sprintf("%q", dir+"/state"), 1)
	body = strings.Replace(body, "'/run/berth/berth.sock'", fmt.Sprintf("%q", dir+"/b.sock"), 1)
	p := filepath.Join(dir, "config.toml")
	os.WriteFile(p, []byte(body), 0o644)
	dump, err := exec.Command(daemon.Binary(t, "berthd"), "--config", p, "config", "dump").CombinedOutput()
	if err != nil || !strings.Contains(string(dump), dir+"/root") {
		t.Errorf("config dump of the default config: %v %s", err, dump)
	}
}

func TestSocketsAndGracefulStop(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	for _, p := range []string{d.Address, d.Address + ".ttrpc"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o660 {
			t.Errorf("%s: mode %v, want a socket with 0660", p, st.Mode())
		}
	}
	if st, _ := os.Stat(filepath.Dir(d.Address)); st.Mode().Perm() != 0o711 {
		t.Errorf("socket dir mode %v, want 0711", st.Mode().Perm())
	}
	for _, p := range []string{d.Root, d.State} {
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o711 {
			t.Errorf("%s mode %v, want 0711", p, st.Mode().Perm())
		}
	}

	// A call in flight when SIGTERM arrives still gets its answer.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "containerd-namespace", "default")
	client := introspection.NewIntrospectionClient(d.Conn())
	if _, err := client.Server(ctx, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	for _, p := range []string{d.Address, d.Address + ".ttrpc"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists after stop", p)
		}
	}
	d.Restart()
	d.MustBerth("version")
}

func TestUUIDSurvivesRestart(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	get := func() string {
		resp, err := introspection.NewIntrospectionClient(d.Conn()).Server(context.Background(), &emptypb.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Pid != uint64(d.Pid()) {
			t.Errorf("server pid %d, want %d", resp.Pid, d.Pid())
		}
		return resp.UUID
	}
	first := get()
	d.Restart()
	if second := get(); second != first || first == "" {
		t.Errorf("uuid changed across restart: %q then %q", first, second)
	}
}

func TestDebugEndpoint(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := daemon.Start(t, daemon.WithConfig(fmt.Sprintf("[debug]\naddress = %q\nlevel = 'debug'", addr)))
	d.MustBerth("version")
	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
		return string(b)
	}
	if m := get("/metrics"); !strings.Contains(m, `berthd_grpc_handled_total{code="OK",method="/containerd.services.version.v1.Version/Version"}`) {
		t.Errorf("metrics lack the version call:\n%s", m)
	}
	if p := get("/debug/pprof/"); !strings.Contains(p, "goroutine") {
		t.Errorf("pprof index: %s", p)
	}
}

func TestDebugEndpointRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	dir, _ := os.MkdirTemp("", "bt-")
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte(fmt.Sprintf("version = 1\nroot = %q\nstate = %q\n[grpc]\naddress = %q\n[debug]\naddress = '0.0.0.0:0'\n", dir+"/r", dir+"/s", dir+"/b.sock")), 0o644)
	out, err := exec.Command(daemon.Binary(t, "berthd"), "--config", p).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must be a loopback address") {
		t.Errorf("non-loopback debug address: %v %s", err, out)
	}
}

func TestInfoAndDiskUsage(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	d.MustBerth("ns", "create", "one")
	out := d.MustBerth("info")
	for _, want := range []string{"Server Version:", "Kernel Version:", "Cgroup Version:", "Root Dir: " + d.Root, "Namespaces: 1", "Plugins:"} {
		if !strings.Contains(out, want) {
			t.Errorf("berth info lacks %q:\n%s", want, out)
		}
	}
	var info struct {
		RootDir string `json:"root_dir"`
		Ncpu    int    `json:"ncpu"`
	}
	if err := json.Unmarshal([]byte(d.MustBerth("info", "--format", "json")), &info); err != nil || info.RootDir != d.Root || info.Ncpu < 1 {
		t.Errorf("info json: %+v %v", info, err)
	}
	if out := d.MustBerth("system", "df"); !strings.HasPrefix(out, "TYPE") {
		t.Errorf("system df:\n%s", out)
	}
}

func TestCLIErrors(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	r := d.Berth("--address", filepath.Join(d.Dir, "nothing.sock"), "ns", "ls")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "cannot connect to berthd") {
		t.Errorf("no daemon: %+v", r)
	}
	r = d.Berth("ns", "create")
	if r.ExitCode != 125 || !strings.Contains(r.Stderr, "needs exactly 1 argument") {
		t.Errorf("missing argument: %+v", r)
	}
	r = d.Berth("ns", "ls", "--bogus")
	if r.ExitCode != 125 || !strings.Contains(r.Stderr, "unknown flag: --bogus") {
		t.Errorf("unknown flag: %+v", r)
	}
	r = d.Berth("ns", "ls", "--format", "xml")
	if r.ExitCode != 125 || !strings.Contains(r.Stderr, "--format") {
		t.Errorf("bad format: %+v", r)
	}
	if out := d.MustBerth("completion", "bash"); !strings.Contains(out, "berth") {
		t.Error("bash completion is empty")
	}
	_ = syscall.SIGTERM
}
