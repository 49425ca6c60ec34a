package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/integration/testimages"
	"github.com/berthd/berth/internal/testutil/daemon"
)

// entryNames lists the entries of a tar, without a folder's slash.
func entryNames(t *testing.T, data string) []string {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(data))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		names = append(names, strings.TrimSuffix(h.Name, "/"))
	}
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

func TestDiffCommitExport(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	d.MustBerth("run", "--name", "ch", "busybox", "sh", "-c", "mkdir /data && echo a > /data/a && rm /etc/group && echo x >> /etc/passwd")
	diff := d.MustBerth("diff", "ch")
	for _, want := range []string{"A /data\n", "A /data/a\n", "C /etc\n", "D /etc/group\n", "C /etc/passwd\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	d.MustBerth("commit", "-m", "add data", "-a", "Berth Tester", "-c", `CMD ["cat", "a"]`, "-c", "ENV COMMITTED=yes", "-c", "WORKDIR /data",
		"ch", "example.com/berth/committed:v1")
	if out := d.MustBerth("run", "--rm", "example.com/berth/committed:v1"); out != "a\n" {
		t.Errorf("committed CMD/WORKDIR: %q", out)
	}
	if out := d.MustBerth("run", "--rm", "example.com/berth/committed:v1", "sh", "-c", "echo $COMMITTED; test -e /etc/group || echo no-group"); out != "yes\nno-group\n" {
		t.Errorf("committed ENV and deletion: %q", out)
	}
	var img []struct {
		Config json.RawMessage
	}
	if err := json.Unmarshal([]byte(d.MustBerth("images", "inspect", "example.com/berth/committed:v1")), &img); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Author  string
		History []struct {
			Comment    string `json:"comment"`
			Author     string `json:"author"`
			CreatedBy  string `json:"created_by"`
			EmptyLayer bool   `json:"empty_layer"`
		} `json:"history"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	json.Unmarshal(img[0].Config, &cfg)
	if len(cfg.RootFS.DiffIDs) != 2 || len(cfg.History) != 2 || cfg.History[1].Comment != "add data" || cfg.History[1].Author != "Berth Tester" {
		t.Errorf("committed config: %+v", cfg)
	}
	// A running container is committed while paused, and keeps running.
	d.MustBerth("run", "-d", "--name", "live", "busybox", "sh", "-c", "echo live > /live; sleep 300")
	waitFile(t, d, "live", "/live")
	d.MustBerth("commit", "live", "live-snap")
	if st := state(t, d, "live"); st.Status != "running" {
		t.Errorf("after commit the container is %+v", st)
	}
	if out := d.MustBerth("run", "--rm", "live-snap", "cat", "/live"); out != "live\n" {
		t.Errorf("commit of a running container: %q", out)
	}
	// export, stopped and running: the whole filesystem, the changes in.
	for _, ref := range []string{"ch", "live"} {
		out := d.MustBerth("export", ref)
		names := entryNames(t, out)
		if !contains(names, "bin/busybox") || !contains(names, "etc/passwd") {
			t.Errorf("export %s: %d entries, no bin/busybox or etc/passwd", ref, len(names))
		}
		if ref == "ch" && (contains(names, "etc/group") || !contains(names, "data/a")) {
			t.Errorf("export of ch does not show its changes")
		}
		if ref == "live" && !contains(names, "live") {
			t.Errorf("export of live lacks /live")
		}
	}
	out := filepath.Join(t.TempDir(), "fs.tar")
	d.MustBerth("export", "-o", out, "ch")
	if fi, err := os.Stat(out); err != nil || fi.Size() < 100000 {
		t.Errorf("export -o: %v", err)
	}
	// An image's STOPSIGNAL is what stop sends to its containers.
	d.MustBerth("commit", "-c", "STOPSIGNAL SIGUSR2", "ch", "usr2-image")
	d.MustBerth("run", "-d", "--name", "usr2", "usr2-image", "sh", "-c", `trap "exit 12" USR2; while true; do sleep 0.1; done`)
	d.MustBerth("stop", "-t", "10", "usr2")
	if st := state(t, d, "usr2"); st.ExitCode != 12 {
		t.Errorf("stop of a container whose image stops with SIGUSR2: %+v", st)
	}
}

// waitFile waits until ref's container has path.
func waitFile(t *testing.T, d *daemon.Daemon, ref, path string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if d.Berth("exec", ref, "test", "-e", path, "-o", "-L", path).ExitCode == 0 {
			return
		}
	}
	t.Fatalf("%s never got %s", ref, path)
}

func TestCopy(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	host := t.TempDir()
	write := func(rel, data string) {
		p := filepath.Join(host, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write("file.txt", "file data\n")
	write("dir/a", "A\n")
	write("dir/sub/b", "B\n")
	os.Chown(filepath.Join(host, "dir/a"), 1234, 1234)
	d.MustBerth("create", "--name", "stopped", "busybox", "true")
	d.MustBerth("run", "-d", "--name", "running", "busybox", "sleep", "300")
	for _, ctr := range []string{"stopped", "running"} {
		t.Run(ctr, func(t *testing.T) {
			// host -> container: a file into a folder, a file to a new name,
			// a folder to a new name, a folder into a folder, contents.
			d.MustBerth("cp", filepath.Join(host, "file.txt"), ctr+":/tmp")
			d.MustBerth("cp", filepath.Join(host, "file.txt"), ctr+":/tmp/renamed.txt")
			d.MustBerth("cp", filepath.Join(host, "dir"), ctr+":/newdir")
			d.MustBerth("cp", filepath.Join(host, "dir"), ctr+":/tmp")
			d.MustBerth("cp", "-a", filepath.Join(host, "dir")+"/.", ctr+":/home")
			back := t.TempDir()
			d.MustBerth("cp", ctr+":/tmp", back)
			d.MustBerth("cp", ctr+":/newdir", filepath.Join(back, "nd"))
			d.MustBerth("cp", ctr+":/home/.", filepath.Join(back, "home"))
			for rel, want := range map[string]string{
				"tmp/file.txt": "file data\n", "tmp/renamed.txt": "file data\n", "tmp/dir/a": "A\n",
				"tmp/dir/sub/b": "B\n", "nd/a": "A\n", "nd/sub/b": "B\n", "home/a": "A\n", "home/sub/b": "B\n",
			} {
				if got, err := os.ReadFile(filepath.Join(back, rel)); err != nil || string(got) != want {
					t.Errorf("%s: %q, %v", rel, got, err)
				}
			}
			// Owners: root in the container unless -a (which kept 1234).
			if own := listOwner(t, d, ctr, "/newdir/a"); own != "0:0" {
				t.Errorf("copied in without -a: owner %s", own)
			}
			if own := listOwner(t, d, ctr, "/home/a"); own != "1234:1234" {
				t.Errorf("copied in with -a: owner %s", own)
			}
			// "-": a tar to stdout, and one from stdin.
			names := entryNames(t, d.MustBerth("cp", ctr+":/newdir", "-"))
			if !contains(names, "newdir/sub/b") {
				t.Errorf("cp to -: %v", names)
			}
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "from-stdin", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
			tw.Write([]byte("in\n"))
			tw.Close()
			if r := d.BerthIn(buf.String(), "cp", "-", ctr+":/tmp"); r.ExitCode != 0 {
				t.Errorf("cp - : %s", r.Stderr)
			}
			if out := d.MustBerth("cp", ctr+":/tmp/from-stdin", "-"); !strings.Contains(out, "in\n") {
				t.Errorf("tar from stdin not extracted")
			}
			// Errors: no such path, a folder onto a file, a missing parent.
			wantExit(t, d.Berth("cp", ctr+":/nope", back), 1, "could not find /nope")
			wantExit(t, d.Berth("cp", filepath.Join(host, "dir"), ctr+":/tmp/renamed.txt"), 125, "cannot copy a folder onto the file")
			wantExit(t, d.Berth("cp", filepath.Join(host, "file.txt"), ctr+":/no/such/dir/"), 1, "does not exist")
		})
	}
}

// listOwner is uid:gid of path in a container (copied out with -a).
func listOwner(t *testing.T, d *daemon.Daemon, ctr, path string) string {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(d.MustBerth("cp", "-a", ctr+":"+path, "-")))
	h, err := tr.Next()
	if err != nil {
		t.Fatalf("cp %s:%s: %v", ctr, path, err)
	}
	return fmt.Sprintf("%d:%d", h.Uid, h.Gid)
}

// TestCopyStaysInTheContainer: symlinks and ".." in paths, and a tar that
// climbs, never reach the host outside the container's root, for stopped
// and running containers.
func TestCopyStaysInTheContainer(t *testing.T) {
	t.Parallel()
	d := cliDaemon(t)
	outside := t.TempDir()
	if err := testimages.PrepareOutside(outside); err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	payload := filepath.Join(host, "payload")
	os.WriteFile(payload, []byte("payload\n"), 0o644)
	// Links pointing out, as a hostile container would make them: to /,
	// climbing, and to the host folder's own path.
	links := "ln -s / /escape-abs; ln -s ../../../../../.. /escape-rel; ln -s " + outside + " /escape-host"
	d.MustBerth("run", "--name", "stopped", "busybox", "sh", "-c", links)
	d.MustBerth("run", "-d", "--name", "running", "busybox", "sh", "-c", links+"; sleep 300")
	waitFile(t, d, "running", "/escape-host")
	for _, ctr := range []string{"stopped", "running"} {
		back := t.TempDir()
		// Into the container through the links: the container's own
		// folders, or nothing when the container has no such folder.
		wantExit(t, d.Berth("cp", payload, ctr+":/escape-host/"), 1, "does not exist")
		wantExit(t, d.Berth("cp", payload, ctr+":/escape-abs"+outside+"/"), 1, "does not exist")
		d.MustBerth("cp", payload, ctr+":/escape-rel/tmp/")
		d.MustBerth("cp", payload, ctr+":/../../../../root/")
		d.MustBerth("cp", ctr+":/tmp/payload", filepath.Join(back, "via-rel"))
		d.MustBerth("cp", ctr+":/root/payload", filepath.Join(back, "via-dotdot"))
		// Out of the container through the links: the container's files.
		d.MustBerth("cp", ctr+":/escape-abs/etc/passwd", filepath.Join(back, "passwd-abs"))
		d.MustBerth("cp", ctr+":/../../../../etc/passwd", filepath.Join(back, "passwd-dotdot"))
		d.MustBerth("cp", "-L", ctr+":/escape-rel", filepath.Join(back, "root-copy"))
		for _, f := range []string{"passwd-abs", "passwd-dotdot", "root-copy/etc/passwd"} {
			if got, _ := os.ReadFile(filepath.Join(back, f)); string(got) != testimages.Passwd {
				t.Errorf("%s: %s is not the container's passwd: %q", ctr, f, got)
			}
		}
		wantExit(t, d.Berth("cp", "-L", ctr+":/escape-host/"+testimages.SecretName, back), 1, "could not find")
		// A tar whose names climb is refused, and writes nothing.
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "../../../../../.." + outside + "/planted", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
		tw.Write([]byte("x\n"))
		tw.Close()
		if r := d.BerthIn(buf.String(), "cp", "-", ctr+":/tmp"); r.ExitCode == 0 {
			t.Errorf("%s: a climbing tar was accepted", ctr)
		}
	}
	if err := testimages.CheckOutside(outside); err != nil {
		t.Errorf("the host folder outside the containers changed: %v", err)
	}
	if _, err := os.Stat("/root/payload"); err == nil {
		t.Error("the payload landed in the host's /root")
	}
}
