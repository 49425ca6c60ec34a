package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berthd/berth/core/reference"
	berthimages "github.com/berthd/berth/proto/berth/images/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		images := &cobra.Command{
			Use:     "images",
			Aliases: []string{"image"},
			Short:   "manage images (with no subcommand: list them)",
			GroupID: "images",
		}
		ls := imagesLsCommand(g)
		images.RunE = ls.RunE
		images.Flags().AddFlagSet(ls.Flags())
		images.AddCommand(ls, imagesInspectCommand(g), imagesRmCommand(g, "rm"), imagesTagCommand(g, "tag"),
			imagesImportCommand(g, "import"), imagesExportCommand(g, "export"), imagesUnpackCommand(g))
		rmi := imagesRmCommand(g, "rmi")
		rmi.GroupID = "images"
		tag := imagesTagCommand(g, "tag")
		tag.GroupID = "images"
		load := imagesImportCommand(g, "load")
		load.GroupID = "images"
		save := imagesExportCommand(g, "save")
		save.GroupID = "images"
		root.AddCommand(images, rmi, tag, load, save)
	})
}

// normalizeImage turns a user's image name into the full reference
// ("busybox" → "docker.io/library/busybox:latest").
func normalizeImage(name string) (string, error) {
	ref, err := reference.ParseNormalized(name)
	if err != nil {
		return "", usageError("invalid image reference %q: %v", name, err)
	}
	return ref.String(), nil
}

// familiar splits a full reference into Docker's REPOSITORY and TAG.
func familiar(name string) (repo, tag string) {
	ref, err := reference.ParseNormalized(name)
	if err != nil {
		return name, "<none>"
	}
	repo = ref.FamiliarName()
	tag = ref.Tag
	if tag == "" {
		tag = "<none>"
	}
	return repo, tag
}

// shortID is the first 12 hex characters of a digest, as docker shows ids.
func shortID(d string) string {
	_, hex, ok := strings.Cut(d, ":")
	if !ok {
		hex = d
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

type imageRow struct {
	Name       string    `json:"name"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	ID         string    `json:"id"`
	Digest     string    `json:"digest"`
	Created    time.Time `json:"created,omitzero"`
	Size       int64     `json:"size"`
	Platforms  []string  `json:"platforms,omitempty"`
	Unpacked   []string  `json:"unpacked,omitempty"`
	Error      string    `json:"error,omitempty"`
}

func imagesLsCommand(g *globals) *cobra.Command {
	var format string
	var quiet, digests bool
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "list images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), berthimages.NewImagesClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.List(ctx, &berthimages.ListRequest{Filters: filters})
			if err != nil {
				return err
			}
			var rows []imageRow
			for _, s := range resp.Images {
				repo, tag := familiar(s.Name)
				r := imageRow{Name: s.Name, Repository: repo, Tag: tag, ID: shortID(s.ConfigDigest), Digest: s.Target.GetDigest(),
					Size: s.Size, Platforms: s.Platforms, Unpacked: s.Unpacked, Error: s.Error}
				if s.Created != nil {
					r.Created = s.Created.AsTime()
				}
				rows = append(rows, r)
			}
			cols := []column[imageRow]{
				{"REPOSITORY", func(r imageRow) string { return r.Repository }},
				{"TAG", func(r imageRow) string { return r.Tag }},
			}
			if digests {
				cols = append(cols, column[imageRow]{"DIGEST", func(r imageRow) string { return r.Digest }})
			}
			cols = append(cols,
				column[imageRow]{"IMAGE ID", func(r imageRow) string { return orDash(r.ID) }},
				column[imageRow]{"CREATED", func(r imageRow) string { return orDash(ago(r.Created)) }},
				column[imageRow]{"SIZE", func(r imageRow) string { return humanSize(r.Size) }},
			)
			if quiet {
				cols = []column[imageRow]{{"", func(r imageRow) string { return r.ID }}}
			}
			return render(g.stdout, format, rows, cols, quiet)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only image ids")
	cmd.Flags().BoolVar(&digests, "digests", false, "show digests")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter (containerd syntax: name~=busybox, labels.k==v)")
	return cmd
}

func imagesInspectCommand(g *globals) *cobra.Command {
	var platform string
	cmd := &cobra.Command{
		Use:   "inspect IMAGE...",
		Short: "show images' details as JSON",
		Args:  minArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			var out []any
			for _, a := range args {
				v, err := inspectImage(ctx, c, a, platform)
				if err != nil {
					return err
				}
				out = append(out, v)
			}
			return writeJSON(g.stdout, out)
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "platform to describe (default: the daemon's)")
	return cmd
}

// imageInspect is what `berth inspect IMAGE` prints.
type imageInspect struct {
	Name      string            `json:"Name"`
	Id        string            `json:"Id"`
	RepoTags  []string          `json:"RepoTags"`
	Digest    string            `json:"Digest"`
	MediaType string            `json:"MediaType"`
	Created   *time.Time        `json:"Created,omitempty"`
	Size      int64             `json:"Size"`
	Platforms []string          `json:"Platforms,omitempty"`
	Unpacked  []string          `json:"Unpacked,omitempty"`
	Labels    map[string]string `json:"Labels,omitempty"`
	Manifest  json.RawMessage   `json:"Manifest,omitempty"`
	Config    json.RawMessage   `json:"Config,omitempty"`
}

func inspectImage(ctx context.Context, c *Client, name, platform string) (*imageInspect, error) {
	full, err := normalizeImage(name)
	if err != nil {
		return nil, err
	}
	resp, err := berthimages.NewImagesClient(c.Conn()).Inspect(ctx, &berthimages.InspectRequest{Name: full, Platform: platform})
	if err != nil {
		return nil, err
	}
	s := resp.Summary
	repo, tag := familiar(s.Name)
	v := &imageInspect{Name: s.Name, Id: s.ConfigDigest, RepoTags: []string{repo + ":" + tag}, Digest: s.Target.GetDigest(),
		MediaType: s.Target.GetMediaType(), Size: s.Size, Platforms: s.Platforms, Unpacked: s.Unpacked, Labels: s.Labels,
		Manifest: resp.Manifest, Config: resp.Config}
	if s.Created != nil {
		t := s.Created.AsTime()
		v.Created = &t
	}
	return v, nil
}

func imagesRmCommand(g *globals, use string) *cobra.Command {
	var sync bool
	cmd := &cobra.Command{
		Use:     use + " IMAGE...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove images (their content goes once nothing else uses it)",
		Args:    minArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), imagesapi.NewImagesClient)
			if err != nil {
				return err
			}
			defer cancel()
			return eachArg(g, args, func(a string) error {
				full, err := normalizeImage(a)
				if err != nil {
					return err
				}
				if _, err := client.Delete(ctx, &imagesapi.DeleteImageRequest{Name: full, Sync: sync}); err != nil {
					return fmt.Errorf("image %s: %w", a, err)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&sync, "sync", false, "wait until the image's unused content is removed")
	return cmd
}

func imagesTagCommand(g *globals, use string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " SOURCE TARGET",
		Short: "give an image another name",
		Args:  exactArgs(2, "SOURCE TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := normalizeImage(args[0])
			if err != nil {
				return err
			}
			dst, err := normalizeImage(args[1])
			if err != nil {
				return err
			}
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), imagesapi.NewImagesClient)
			if err != nil {
				return err
			}
			defer cancel()
			got, err := client.Get(ctx, &imagesapi.GetImageRequest{Name: src})
			if err != nil {
				return fmt.Errorf("image %s: %w", args[0], err)
			}
			img := &imagesapi.Image{Name: dst, Target: got.Image.Target, Labels: got.Image.Labels}
			if _, err := client.Create(ctx, &imagesapi.CreateImageRequest{Image: img}); err != nil {
				if !isAlreadyExists(err) {
					return err
				}
				_, err = client.Update(ctx, &imagesapi.UpdateImageRequest{Image: img})
				return err
			}
			return nil
		},
	}
}

func imagesImportCommand(g *globals, use string) *cobra.Command {
	var o berthimages.ImportOptions
	var input string
	cmd := &cobra.Command{
		Use:   use + " [FILE|-]",
		Short: "import an image archive (OCI layout tar or docker save tar, optionally compressed)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				input = args[0]
			}
			if input == "" {
				if term.IsTerminal(int(os.Stdin.Fd())) {
					return usageError("name an archive file, or pipe one to stdin")
				}
				input = "-"
			}
			return importArchive(cmd.Context(), g, input, &o)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&input, "input", "i", "", "archive to read (default: the argument, or stdin)")
	fl.BoolVar(&o.AllPlatforms, "all-platforms", false, "import every platform, not only the daemon's")
	fl.StringVar(&o.Platform, "platform", "", "import this platform (e.g. linux/arm64)")
	fl.StringVar(&o.BaseName, "base-name", "", "base name for images the archive names only by tag")
	fl.StringVar(&o.DigestNames, "digests", "", "also name images <REPOSITORY>@<digest>")
	fl.StringVar(&o.IndexName, "index-name", "", "keep the archive's index as an image of this name")
	fl.BoolVar(&o.NoUnpack, "no-unpack", false, "do not unpack the images into a snapshotter")
	fl.StringVar(&o.Snapshotter, "snapshotter", "", "snapshotter to unpack into (default: the daemon's)")
	return cmd
}

func importArchive(parent context.Context, g *globals, input string, o *berthimages.ImportOptions) error {
	var r io.Reader = os.Stdin
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	c, ctx, cancel, err := g.connect(parent)
	if err != nil {
		return err
	}
	defer cancel()
	stream, err := berthimages.NewImagesClient(c.Conn()).Import(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&berthimages.ImportRequest{Options: o}); err != nil {
		return err
	}
	sendErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if serr := stream.Send(&berthimages.ImportRequest{Data: buf[:n]}); serr != nil {
					sendErr <- serr
					return
				}
			}
			if errors.Is(err, io.EOF) {
				sendErr <- stream.CloseSend()
				return
			}
			if err != nil {
				cancel()
				sendErr <- fmt.Errorf("read %s: %w", input, err)
				return
			}
		}
	}()
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return <-sendErr
			}
			select {
			case serr := <-sendErr:
				if serr != nil && !errors.Is(serr, io.EOF) {
					return serr
				}
			default:
			}
			return err
		}
		if p := resp.Progress; p != nil && tty {
			fmt.Fprintf(g.stderr, "\r%s: %s, %d blobs   ", p.Stage, humanSize(p.Bytes), p.Blobs)
		}
		if len(resp.Images) > 0 {
			if tty {
				fmt.Fprint(g.stderr, "\r\033[K")
			}
			for _, img := range resp.Images {
				fmt.Fprintf(g.stdout, "Loaded image: %s (%s)\n", img.Name, img.Target.GetDigest())
			}
		}
	}
}

func imagesExportCommand(g *globals, use string) *cobra.Command {
	var output, platform string
	var all bool
	cmd := &cobra.Command{
		Use:   use + " [-o FILE] IMAGE...",
		Short: "write images to an OCI archive (with a docker manifest.json)",
		Args:  minArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var w io.Writer = g.stdout
			if output == "" || output == "-" {
				if f, ok := g.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return usageError("refusing to write an archive to a terminal: use -o FILE or redirect stdout")
				}
			}
			var names []string
			for _, a := range args {
				full, err := normalizeImage(a)
				if err != nil {
					return err
				}
				names = append(names, full)
			}
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), berthimages.NewImagesClient)
			if err != nil {
				return err
			}
			defer cancel()
			stream, err := client.Export(ctx, &berthimages.ExportRequest{Names: names, AllPlatforms: all, Platform: platform})
			if err != nil {
				return err
			}
			var tmp string
			if output != "" && output != "-" {
				f, err := os.CreateTemp(dirOf(output), ".berth-export-")
				if err != nil {
					return err
				}
				tmp = f.Name()
				defer func() {
					f.Close()
					os.Remove(tmp)
				}()
				w = f
			}
			err = recvEach(stream, func(resp *berthimages.ExportResponse) error {
				_, err := w.Write(resp.Data)
				return err
			})
			if err != nil {
				return err
			}
			if tmp != "" {
				// Only a complete archive takes the output's name.
				return os.Rename(tmp, output)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "archive file to write (default: stdout)")
	cmd.Flags().BoolVar(&all, "all-platforms", false, "export every platform")
	cmd.Flags().StringVar(&platform, "platform", "", "export this platform (default: the daemon's)")
	return cmd
}

func imagesUnpackCommand(g *globals) *cobra.Command {
	var snapshotter, platform string
	cmd := &cobra.Command{
		Use:   "unpack IMAGE",
		Short: "unpack an image's layers into a snapshotter",
		Args:  exactArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			full, err := normalizeImage(args[0])
			if err != nil {
				return err
			}
			client, ctx, cancel, err := connectAPI(g, cmd.Context(), berthimages.NewImagesClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := client.Unpack(ctx, &berthimages.UnpackRequest{Name: full, Snapshotter: snapshotter, Platform: platform})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s unpacked into %s (%s)\n", args[0], resp.Snapshotter, resp.ChainId)
			return nil
		},
	}
	cmd.Flags().StringVar(&snapshotter, "snapshotter", "", "snapshotter (default: the daemon's)")
	cmd.Flags().StringVar(&platform, "platform", "", "platform (default: the daemon's)")
	return cmd
}
