package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/testutil/daemon"
)

// volumeJSON is what `berth volume inspect` and `ls --format json` print.
type volumeJSON struct {
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Scope      string            `json:"scope"`
	Mountpoint string            `json:"mountpoint"`
	CreatedAt  string            `json:"created_at"`
	Labels     map[string]string `json:"labels"`
	Options    map[string]string `json:"options"`
	Anonymous  bool              `json:"anonymous"`
	Containers []string          `json:"containers"`
}

func volumesOf(t *testing.T, d *daemon.Daemon, args ...string) []volumeJSON {
	t.Helper()
	var vols []volumeJSON
	out := d.MustBerth(append([]string{"volume", "ls", "--format", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &vols); err != nil {
		t.Fatalf("volume ls --format json: %v\n%s", err, out)
	}
	return vols
}

func volumeNames(vols []volumeJSON) []string {
	var out []string
	for _, v := range vols {
		out = append(out, v.Name)
	}
	return out
}

func TestVolumeCommands(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	if out := d.MustBerth("volume", "create", "web-data", "--label", "app=web", "-l", "tier=front"); out != "web-data\n" {
		t.Errorf("volume create printed %q", out)
	}
	random := strings.TrimSpace(d.MustBerth("volume", "create"))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(random) {
		t.Errorf("unnamed volume got name %q", random)
	}
	var tmpfs volumeJSON
	out := d.MustBerth("volume", "create", "scratch", "--opt", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=64m", "--format", "json")
	if err := json.Unmarshal([]byte(out), &tmpfs); err != nil {
		t.Fatalf("create --format json: %v\n%s", err, out)
	}
	if tmpfs.Name != "scratch" || tmpfs.Options["o"] != "size=64m" || tmpfs.Options["type"] != "tmpfs" || tmpfs.Driver != "local" {
		t.Errorf("created %+v", tmpfs)
	}

	vols := volumesOf(t, d)
	want := []string{"scratch", "web-data", random}
	slices.Sort(want)
	if !slices.Equal(volumeNames(vols), want) {
		t.Errorf("volume ls = %v, want %v", volumeNames(vols), want)
	}
	for filter, want := range map[string][]string{
		"label=app=web":  {"web-data"},
		"label=tier":     {"web-data"},
		"name=scr":       {"scratch"},
		"dangling=true":  want,
		"dangling=false": nil,
		"driver=local":   want,
	} {
		if got := volumeNames(volumesOf(t, d, "--filter", filter)); !slices.Equal(got, want) {
			t.Errorf("volume ls --filter %s = %v, want %v", filter, got, want)
		}
	}
	if got := d.MustBerth("volume", "ls", "-q", "-f", "name=web", "-f", "name=scratch"); got != "scratch\nweb-data\n" {
		t.Errorf("volume ls -q = %q", got)
	}
	if got := d.MustBerth("volume", "ls", "--filter", "label=app", "--format", "{{.Name}} {{.Driver}} {{index .Labels \"tier\"}}"); got != "web-data local front\n" {
		t.Errorf("volume ls --format template = %q", got)
	}
	table := d.MustBerth("volume", "ls")
	if !strings.HasPrefix(table, "DRIVER") || !strings.Contains(table, "VOLUME NAME") || !strings.Contains(table, "web-data") {
		t.Errorf("volume ls table:\n%s", table)
	}

	var inspected []volumeJSON
	out = d.MustBerth("volume", "inspect", "web-data", "scratch")
	if err := json.Unmarshal([]byte(out), &inspected); err != nil {
		t.Fatalf("volume inspect: %v\n%s", err, out)
	}
	if len(inspected) != 2 || inspected[0].Labels["app"] != "web" || inspected[0].Scope != "local" || inspected[0].CreatedAt == "" ||
		inspected[0].Containers == nil || inspected[0].Anonymous {
		t.Errorf("inspect = %+v", inspected)
	}
	mp := inspected[0].Mountpoint
	if !strings.HasPrefix(mp, d.Root) || !strings.HasSuffix(mp, "/default/web-data/_data") {
		t.Errorf("mountpoint %s is not the volume's data folder under %s", mp, d.Root)
	}
	if st, err := os.Stat(mp); err != nil || !st.IsDir() {
		t.Errorf("mountpoint: %v", err)
	}
	if got := d.MustBerth("volume", "inspect", "--format", "{{.Name}}:{{.Mountpoint}}", "web-data"); got != "web-data:"+mp+"\n" {
		t.Errorf("inspect --format = %q", got)
	}
	r := d.Berth("volume", "inspect", "web-data", "missing-vol")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, `volume "missing-vol": not found`) || !strings.Contains(r.Stdout, `"web-data"`) {
		t.Errorf("inspect with a missing volume: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}

	// Namespaces keep their own volumes.
	if got := d.MustBerth("-n", "other", "volume", "ls", "-q"); got != "" {
		t.Errorf("namespace other lists %q", got)
	}

	if got := d.MustBerth("volume", "rm", "web-data", random); got != "web-data\n"+random+"\n" {
		t.Errorf("volume rm printed %q", got)
	}
	if _, err := os.Stat(mp); !os.IsNotExist(err) {
		t.Errorf("data left after rm: %v", err)
	}
	r = d.Berth("volume", "rm", "web-data")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, `volume "web-data": not found`) {
		t.Errorf("rm of a removed volume: exit %d %s", r.ExitCode, r.Stderr)
	}

	// Prune takes only anonymous volumes unless --all.
	var pruned struct {
		Deleted        []string `json:"deleted"`
		SpaceReclaimed int64    `json:"space_reclaimed"`
	}
	if err := json.Unmarshal([]byte(d.MustBerth("volume", "prune", "-f", "--format", "json")), &pruned); err != nil || len(pruned.Deleted) != 0 {
		t.Errorf("prune without --all removed %v (%v)", pruned.Deleted, err)
	}
	d.MustBerth("volume", "create", "old")
	os.WriteFile(filepath.Join(filepath.Dir(mp), "..", "old", "_data", "f"), make([]byte, 20000), 0o644)
	if err := json.Unmarshal([]byte(d.MustBerth("volume", "prune", "-f", "--all", "--filter", "name=old", "--format", "json")), &pruned); err != nil ||
		!slices.Equal(pruned.Deleted, []string{"old"}) || pruned.SpaceReclaimed < 20000 {
		t.Errorf("prune --all name=old = %+v (%v)", pruned, err)
	}
	if got := d.BerthIn("n\n", "volume", "prune", "--all"); got.ExitCode != 0 || !strings.Contains(got.Stdout, "Are you sure") {
		t.Errorf("prune asking: %+v", got)
	}
	if got := volumeNames(volumesOf(t, d)); !slices.Equal(got, []string{"scratch"}) {
		t.Errorf("after answering no, volumes are %v", got)
	}
	if out := d.BerthIn("y\n", "volume", "prune", "--all").Stdout; !strings.Contains(out, "Deleted Volumes:\nscratch\n") || !strings.Contains(out, "Total reclaimed space:") {
		t.Errorf("prune after yes:\n%s", out)
	}
}

func TestVolumeBadInput(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	d.MustBerth("volume", "create", "taken")
	missing := filepath.Join(d.Dir, "no-such-dir")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"volume", "create", "bad/name"}, 1, `volume name "bad/name" is invalid: it contains '/'`},
		{[]string{"volume", "create", ".."}, 1, `volume name ".." is invalid: it starts with '.' instead of a letter or digit`},
		{[]string{"volume", "create", "a"}, 1, `volume name "a" is invalid: it is shorter than two characters`},
		{[]string{"volume", "create", "sp ace"}, 1, `volume name "sp ace" is invalid: it contains ' '`},
		{[]string{"volume", "create", "--driver", "other", "taken"}, 1, `volume "taken" already exists with driver "local", not "other"`},
		{[]string{"volume", "create", "--driver", "nfs", "v1"}, 1, `volume driver "nfs" is not available (available: local)`},
		{[]string{"volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=" + missing, "v2"}, 1, "bind source path does not exist: " + missing},
		{[]string{"volume", "create", "-o", "size=1g", "v3"}, 1, `volume option "size" is not known to the local driver (type, device, o)`},
		{[]string{"volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=huge", "v4"}, 1, `tmpfs option "size=huge": size must be positive`},
		{[]string{"volume", "create", "-o", "novalue", "v5"}, 125, `option "novalue" is not KEY=VALUE`},
		{[]string{"volume", "create", "v6", "v7"}, 125, `takes at most one argument`},
		{[]string{"volume", "ls", "--filter", "color=red"}, 1, `filter "color=red": unknown key "color" (dangling, driver, label, name)`},
		{[]string{"volume", "ls", "--filter", "dangling=maybe"}, 1, `dangling takes true or false`},
		{[]string{"volume", "ls", "--format", "{{.Nope}}"}, 1, `can't evaluate field Nope`},
		{[]string{"volume", "rm"}, 125, `needs at least 1 argument(s): NAME`},
		{[]string{"volume", "rm", "../../etc"}, 1, `volume name "../../etc" is invalid`},
		{[]string{"volume", "inspect", "nope-vol"}, 1, `volume "nope-vol": not found`},
		{[]string{"volume", "prune", "-f", "--filter", "x"}, 1, `filter "x" is not key=value`},
	} {
		r := d.Berth(c.args...)
		if r.ExitCode != c.code || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("berth %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), r.ExitCode, r.Stderr, c.code, c.want)
		}
	}
	if got := volumeNames(volumesOf(t, d)); !slices.Equal(got, []string{"taken"}) {
		t.Errorf("bad input changed the volumes: %v", got)
	}
	// As in docker, creating an existing volume again returns it unchanged.
	if out := d.MustBerth("volume", "create", "taken", "--label", "new=1"); out != "taken\n" {
		t.Errorf("creating an existing volume printed %q", out)
	}
	if got := volumesOf(t, d); len(got) != 1 || len(got[0].Labels) != 0 {
		t.Errorf("creating an existing volume changed it: %+v", got)
	}
	entries, _ := os.ReadDir(filepath.Join(d.Root, "io.berth.volume.v1.local", "default"))
	if len(entries) != 1 || entries[0].Name() != "taken" {
		t.Errorf("bad input left folders: %v", entries)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("the missing bind source was created: %v", err)
	}
}

func TestVolumesSurviveRestartAndKill(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	d.MustBerth("volume", "create", "keep", "--label", "k=v")
	d.MustBerth("-n", "other", "volume", "create", "keep")
	host := t.TempDir()
	d.MustBerth("volume", "create", "hostdir", "-o", "type=none", "-o", "o=bind", "-o", "device="+host)
	var vols []volumeJSON
	json.Unmarshal([]byte(d.MustBerth("volume", "inspect", "keep")), &vols)
	data := filepath.Join(vols[0].Mountpoint, "file")
	if err := os.WriteFile(data, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		got := volumesOf(t, d)
		if !slices.Equal(volumeNames(got), []string{"hostdir", "keep"}) || got[1].Labels["k"] != "v" || got[0].Options["device"] != host {
			t.Errorf("%s: volumes %+v", when, got)
		}
		if got := d.MustBerth("-n", "other", "volume", "ls", "-q"); got != "keep\n" {
			t.Errorf("%s: namespace other has %q", when, got)
		}
		if b, err := os.ReadFile(data); err != nil || string(b) != "precious" {
			t.Errorf("%s: volume data %q, %v", when, b, err)
		}
	}
	d.Restart()
	check("after a restart")
	d.Kill()
	d.Restart()
	check("after kill -9")
	d.MustBerth("volume", "rm", "keep", "hostdir")
	d.MustBerth("-n", "other", "volume", "rm", "keep")
}

func TestVolumesInDiskUsage(t *testing.T) {
	t.Parallel()
	d := daemon.Start(t)
	d.MustBerth("volume", "create", "big")
	var vols []volumeJSON
	json.Unmarshal([]byte(d.MustBerth("volume", "inspect", "big")), &vols)
	if err := os.WriteFile(filepath.Join(vols[0].Mountpoint, "f"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	d.MustBerth("volume", "create", "small")
	var rows []struct {
		Type              string
		Total, Active     int64
		Size, Reclaimable int64
	}
	if err := json.Unmarshal([]byte(d.MustBerth("system", "df", "--format", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rows {
		if r.Type == "Local Volumes" {
			found = true
			if r.Total != 2 || r.Active != 0 || r.Size < 1<<20 || r.Reclaimable != r.Size {
				t.Errorf("system df volumes row %+v", r)
			}
		}
	}
	if !found {
		t.Errorf("system df has no Local Volumes row: %+v", rows)
	}
	if out := d.MustBerth("system", "df", "-v"); !strings.Contains(out, "big") || !strings.Contains(out, "Local Volumes") {
		t.Errorf("system df -v:\n%s", out)
	}
	if out := d.MustCtr("plugins", "ls", "type==io.berth.volume.v1"); !strings.Contains(out, "local") || !strings.Contains(out, "ok") {
		t.Errorf("ctr plugins ls does not list the local volume driver:\n%s", out)
	}
}
