package cli

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"

	"github.com/berthd/berth/core/archive"
	containersapi "github.com/berthd/berth/proto/berth/containers/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(cpCommand(g))
	})
}

func cpCommand(g *globals) *cobra.Command {
	var followLink, keepOwner bool
	cmd := &cobra.Command{
		Use:   "cp [flags] CONTAINER:SRC_PATH DEST_PATH|-\n  berth cp [flags] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "copy files between a container (running or stopped) and the host, as tar archives",
		Long: `Copy files or folders between a container and the host, with docker cp's rules:
a folder is copied into an existing folder, or becomes DEST_PATH when that does
not exist; SRC_PATH ending in "/." copies the folder's content. "-" streams a tar
on stdout or reads one from stdin. Paths in the container resolve inside it:
symlinks never lead out of its root.`,
		GroupID: "containers",
		Args:    exactArgs(2, "SRC DEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcCtr, srcPath := splitCopyArg(args[0])
			dstCtr, dstPath := splitCopyArg(args[1])
			switch {
			case srcCtr != "" && dstCtr != "":
				return usageError("copying between containers is not supported: copy to the host first")
			case srcCtr == "" && dstCtr == "":
				return usageError("one of the paths must name a container: CONTAINER:PATH")
			case srcPath == "" || dstPath == "":
				return usageError("paths must not be empty")
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			o := copyOpts{follow: followLink, keepOwner: keepOwner}
			if srcCtr != "" {
				return copyFromContainer(ctx, c, g, srcCtr, srcPath, dstPath, o)
			}
			return copyToContainer(ctx, c, g, srcPath, dstCtr, dstPath, o)
		},
	}
	freeAddressShorthand(cmd, g)
	cmd.Flags().BoolVarP(&followLink, "follow-link", "L", false, "follow a symlink given as SRC_PATH")
	cmd.Flags().BoolVarP(&keepOwner, "archive", "a", false, "keep owners (uid/gid) as in the source")
	return cmd
}

type copyOpts struct {
	follow, keepOwner bool
}

// splitCopyArg splits "container:path"; a path with a slash before the
// colon (./a:b, /x:y) is a host path.
func splitCopyArg(arg string) (container, p string) {
	if arg == "-" || strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return "", arg
	}
	c, p, ok := strings.Cut(arg, ":")
	if !ok || strings.Contains(c, "/") {
		return "", arg
	}
	return c, p
}

// copyPlan says how to rename a tar whose top entry is named top so that
// it lands right under the extraction folder.
type copyPlan struct {
	top      string // the tar's top entry; "" when the tar has none (a root)
	newTop   string // its name once extracted
	contents bool   // drop the top entry: its content goes in directly
}

// mapName renames one entry; false drops it.
func (p copyPlan) mapName(name string) (string, bool) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if p.top == "" {
		return name, name != ""
	}
	if name == p.top {
		return p.newTop, !p.contents
	}
	rest, ok := strings.CutPrefix(name, p.top+"/")
	if !ok {
		return "", false
	}
	if p.contents {
		return rest, true
	}
	return p.newTop + "/" + rest, true
}

// destination is what a copy writes to: exists, is a folder.
type destination struct {
	exists, dir bool
}

// copySource describes what is copied.
type copySource struct {
	// base is the name the copy takes: the last component of the source
	// path as given.
	base string
	// top is the tar's top entry: "" when the tar holds a folder's
	// content (a root, or a link to one, followed).
	top string
	dir bool
	// contents: the path ends in "/.": the folder's content is copied,
	// not the folder.
	contents bool
}

func newCopySource(p, top string, dir bool) copySource {
	clean := path.Clean("/" + p)
	return copySource{base: path.Base(clean), top: top, dir: dir,
		contents: dir && (strings.HasSuffix(p, "/.") || p == ".")}
}

// plan applies docker cp's rules: it returns the folder to extract into,
// a folder to create first ("" for none) and the renaming.
func plan(src copySource, dst string, d destination) (dir, mkdir string, p copyPlan, err error) {
	p = copyPlan{top: src.top, newTop: src.top}
	switch {
	case d.exists && d.dir && src.contents:
		p.contents = true
		return dst, "", p, nil
	case d.exists && d.dir && src.top == "":
		sub := path.Join(dst, src.base)
		return sub, sub, p, nil
	case d.exists && d.dir:
		p.newTop = src.base
		return dst, "", p, nil
	case d.exists && src.dir:
		return "", "", p, usageError("cannot copy a folder onto the file %s", dst)
	case !d.exists && !src.dir && strings.HasSuffix(dst, "/"):
		return "", "", p, fmt.Errorf("destination folder %s does not exist", dst)
	case src.top == "":
		// A folder's content becomes the new folder's.
		return dst, dst, p, nil
	}
	// A file over a file, or anything to a new name: extracted beside it,
	// under its name.
	p.newTop = path.Base(strings.TrimSuffix(dst, "/"))
	return parentOf(dst), "", p, nil
}

func parentOf(p string) string {
	p = strings.TrimSuffix(p, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		if i == 0 {
			return "/"
		}
		return p[:i]
	}
	return "."
}

// retar copies a tar from r to w, renaming entries by p and setting
// owners with own.
func retar(r io.Reader, w io.Writer, p copyPlan, own func(*tar.Header)) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name, ok := p.mapName(hdr.Name)
		if !ok {
			continue
		}
		if hdr.Typeflag == tar.TypeLink {
			if hdr.Linkname, ok = p.mapName(hdr.Linkname); !ok {
				continue
			}
		}
		if hdr.Typeflag == tar.TypeDir {
			name += "/"
		}
		hdr.Name = name
		if own != nil {
			own(hdr)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// owner returns how copied entries get their owners: kept (-a), or the
// given ids.
func owner(keep bool, uid, gid int) func(*tar.Header) {
	if keep {
		return nil
	}
	return func(h *tar.Header) {
		h.Uid, h.Gid, h.Uname, h.Gname = uid, gid, "", ""
	}
}

func copyFromContainer(ctx context.Context, c *Client, g *globals, ctr, src, dst string, o copyOpts) error {
	st, err := containersClient(c).CopyFrom(ctx, &containersapi.CopyFromRequest{Id: ctr, Path: src, FollowLink: o.follow})
	if err != nil {
		return containerError(err)
	}
	first, err := st.Recv()
	if err != nil {
		return containerError(err)
	}
	stat := first.GetStat()
	if stat == nil {
		return fmt.Errorf("berthd sent no description of %s", src)
	}
	r := &streamReader{buf: first.Data, recv: func() ([]byte, error) {
		m, err := st.Recv()
		if err != nil {
			return nil, containerError(err)
		}
		return m.Data, nil
	}}
	if dst == "-" {
		_, err := io.Copy(g.stdout, r)
		return err
	}
	d := destination{}
	if fi, err := os.Stat(dst); err == nil {
		d = destination{exists: true, dir: fi.IsDir()}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dir, mkdir, p, err := plan(newCopySource(src, stat.Name, os.FileMode(stat.Mode).IsDir()), dst, d)
	if err != nil {
		return err
	}
	if mkdir != "" {
		if err := os.Mkdir(mkdir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create destination folder: %w", err)
		}
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("destination folder %s does not exist", dir)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(retar(r, pw, p, owner(o.keepOwner, os.Getuid(), os.Getgid())))
	}()
	// The folder is the root: names cannot climb out of it and symlinks
	// from the container resolve inside it.
	_, err = archive.UntarInto(ctx, dir, ".", pr, archive.WithSameOwner(true))
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("copy into %s: %w", dst, err)
	}
	return nil
}

func copyToContainer(ctx context.Context, c *Client, g *globals, src, ctr, dst string, o copyOpts) error {
	api := containersClient(c)
	d := destination{}
	if st, err := api.StatPath(ctx, &containersapi.CopyFromRequest{Id: ctr, Path: dst, FollowLink: true}); err == nil {
		d = destination{exists: true, dir: os.FileMode(st.Mode).IsDir()}
	} else if !errdefs.IsNotFound(err) {
		return containerError(err)
	}
	var dir string
	var body io.Reader
	if src == "-" {
		if !d.exists || !d.dir {
			return fmt.Errorf("destination %s:%s must be an existing folder to extract a tar from stdin", ctr, dst)
		}
		dir, body = dst, g.stdin
	} else {
		abs, err := filepath.Abs(src)
		if err != nil {
			return err
		}
		if o.follow {
			// A link on the host resolves as the host sees it.
			if abs, err = filepath.EvalSymlinks(abs); err != nil {
				return err
			}
		}
		fi, err := os.Lstat(abs)
		if err != nil {
			return err
		}
		if abs == "/" {
			return usageError("copying the host's root folder is not supported")
		}
		var p copyPlan
		var mkdir string
		if dir, mkdir, p, err = plan(newCopySource(src, filepath.Base(abs), fi.IsDir()), dst, d); err != nil {
			return err
		}
		if mkdir != "" {
			return fmt.Errorf("copy %s: the source has no name to give the copy", src)
		}
		if !d.exists {
			if pst, err := api.StatPath(ctx, &containersapi.CopyFromRequest{Id: ctr, Path: dir, FollowLink: true}); err != nil || !os.FileMode(pst.Mode).IsDir() {
				return fmt.Errorf("destination folder %s does not exist in %s", dir, ctr)
			}
		}
		body = hostTar(ctx, abs, p, o)
	}
	st, err := api.CopyTo(ctx)
	if err != nil {
		return containerError(err)
	}
	if err := st.Send(&containersapi.CopyToRequest{Open: &containersapi.CopyToOpen{Id: ctr, Path: dir}}); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if err := st.Send(&containersapi.CopyToRequest{Data: append([]byte(nil), buf[:n]...)}); err != nil {
				// The server ended the call: its error says why.
				_, cerr := st.CloseAndRecv()
				return containerError(cerr)
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	_, err = st.CloseAndRecv()
	return containerError(err)
}

// hostTar streams a tar of host path abs, renamed by p, owned by root in
// the container unless keepOwner.
func hostTar(ctx context.Context, abs string, p copyPlan, o copyOpts) io.Reader {
	pr, pw := io.Pipe()
	raw, rawW := io.Pipe()
	go func() {
		rawW.CloseWithError(archive.TarPath(ctx, rawW, filepath.Dir(abs), filepath.Base(abs)))
	}()
	go func() {
		err := retar(raw, pw, p, owner(o.keepOwner, 0, 0))
		raw.CloseWithError(err)
		pw.CloseWithError(err)
	}()
	return pr
}

// streamReader reads the data of a stream's messages.
type streamReader struct {
	recv func() ([]byte, error)
	buf  []byte
}

func (r *streamReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		b, err := r.recv()
		if err != nil {
			return 0, err
		}
		r.buf = b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
