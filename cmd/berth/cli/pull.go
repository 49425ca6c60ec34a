package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/api/types"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berthd/berth/core/transfer"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(pullCommand(g), pushCommand(g))
	})
}

// PullOptions are the settings of PullImage.
type PullOptions struct {
	// Platforms choose the manifest pulled (best match); empty means
	// berthd's platform.
	Platforms    []string
	AllPlatforms bool
	// PlainHTTP talks to the registry over plain HTTP.
	PlainHTTP bool
	// HostDir overrides berthd's hosts.toml root for this pull.
	HostDir string
	// Snapshotter to unpack into; "" means the default.
	Snapshotter string
	// Progress, when set, receives the progress display; TTY draws it in
	// place.
	Progress io.Writer
	TTY      bool
}

// PullImage pulls ref (any form docker accepts: "busybox", "host/x:tag",
// "x@sha256:…") through berthd, unpacking it, and returns the image's
// full name and target digest. berth run calls it for images it lacks.
func PullImage(ctx context.Context, c *Client, ref string, o PullOptions) (name, digest string, err error) {
	full, err := normalizeImage(ref)
	if err != nil {
		return "", "", err
	}
	store := &transfertypes.ImageStore{Name: full}
	unpack := &transfertypes.UnpackConfiguration{Snapshotter: o.Snapshotter}
	switch {
	case o.AllPlatforms && len(o.Platforms) > 0:
		return "", "", usageError("--platform and --all-platforms are exclusive")
	case o.AllPlatforms:
		// No platform: every one is pulled; the daemon's is unpacked.
	case len(o.Platforms) == 0:
		store.Platforms = []*types.Platform{platformProto(platforms.DefaultSpec())}
	default:
		for _, s := range o.Platforms {
			p, err := platforms.Parse(s)
			if err != nil {
				return "", "", usageError("platform %q: %v", s, err)
			}
			store.Platforms = append(store.Platforms, platformProto(p))
		}
		unpack.Platform = store.Platforms[0]
	}
	store.Unpacks = []*transfertypes.UnpackConfiguration{unpack}
	creds, err := loadCredentials()
	if err != nil {
		return "", "", err
	}
	call := transferCall{src: registrySource(full, o.PlainHTTP, o.HostDir), dst: store, creds: creds}
	var view *progressView
	if o.Progress != nil {
		view = newProgressView(o.Progress, o.TTY, false)
		call.progress = view.handle
	}
	err = runTransfer(ctx, c, call)
	if view != nil {
		view.finish()
	}
	if err != nil {
		return full, "", err
	}
	img, err := imagesapi.NewImagesClient(c.Conn()).Get(ctx, &imagesapi.GetImageRequest{Name: full})
	if err != nil {
		return full, "", err
	}
	return full, img.GetImage().GetTarget().GetDigest(), nil
}

// EnsureImage returns the full name of ref, pulling it first when berthd
// does not have it.
func EnsureImage(ctx context.Context, c *Client, ref string, o PullOptions) (string, error) {
	full, err := normalizeImage(ref)
	if err != nil {
		return "", err
	}
	_, err = imagesapi.NewImagesClient(c.Conn()).Get(ctx, &imagesapi.GetImageRequest{Name: full})
	if err == nil || !errdefs.IsNotFound(err) {
		return full, err
	}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "Unable to find image '%s' locally\n", ref)
	}
	full, _, err = PullImage(ctx, c, ref, o)
	return full, err
}

func registrySource(ref string, plainHTTP bool, hostDir string) *transfertypes.OCIRegistry {
	r := &transfertypes.OCIRegistry{Reference: ref, Resolver: &transfertypes.RegistryResolver{HostDir: hostDir}}
	if plainHTTP {
		r.Resolver.DefaultScheme = "http"
	}
	return r
}

func platformProto(p platforms.Platform) *types.Platform {
	return &types.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

// stderrTTY reports whether the command's stderr is a terminal.
func stderrTTY(g *globals) bool {
	f, ok := g.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func pullCommand(g *globals) *cobra.Command {
	var o PullOptions
	var platform string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "pull [--platform P] [--all-platforms] [-q] [--plain-http] [--snapshotter S] REF",
		Short:   "pull an image from a registry and unpack it (in berthd, with progress)",
		GroupID: "images",
		Args:    exactArgs(1, "REF"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if platform != "" {
				o.Platforms = []string{platform}
			}
			if !quiet {
				o.Progress, o.TTY = g.stderr, stderrTTY(g)
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			name, digest, err := PullImage(ctx, c, args[0], o)
			if err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(g.stdout, digest)
				return nil
			}
			fmt.Fprintf(g.stdout, "Digest: %s\nPulled %s\n", digest, name)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&platform, "platform", "", "pull this platform (e.g. linux/arm64) of a multi-platform image")
	fl.BoolVar(&o.AllPlatforms, "all-platforms", false, "pull every platform (the daemon's is unpacked)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "print only the image digest")
	fl.BoolVar(&o.PlainHTTP, "plain-http", false, "talk to the registry over plain HTTP")
	fl.StringVar(&o.Snapshotter, "snapshotter", "", "snapshotter to unpack into (default: the daemon's)")
	fl.StringVar(&o.HostDir, "hosts-dir", "", "registry hosts configuration root (default: berthd's config_path)")
	return cmd
}

func pushCommand(g *globals) *cobra.Command {
	var platform, hostDir string
	var plainHTTP, quiet bool
	cmd := &cobra.Command{
		Use:     "push [--platform P] [--plain-http] REF",
		Short:   "push an image to a registry (from berthd, with progress)",
		GroupID: "images",
		Args:    exactArgs(1, "REF"),
		RunE: func(cmd *cobra.Command, args []string) error {
			full, err := normalizeImage(args[0])
			if err != nil {
				return err
			}
			store := &transfertypes.ImageStore{Name: full}
			if platform != "" {
				p, err := platforms.Parse(platform)
				if err != nil {
					return usageError("platform %q: %v", platform, err)
				}
				store.Platforms = []*types.Platform{platformProto(p)}
			}
			creds, err := loadCredentials()
			if err != nil {
				return err
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			call := transferCall{src: store, dst: registrySource(full, plainHTTP, hostDir), creds: creds}
			var pushed string
			view := newProgressView(g.stderr, stderrTTY(g), true)
			call.progress = func(p *transfertypes.Progress) {
				if p.Event == transfer.EventPushed {
					pushed = p.GetDesc().GetDigest()
				}
				if !quiet {
					view.handle(p)
				}
			}
			err = runTransfer(ctx, c, call)
			if !quiet {
				view.finish()
			}
			if err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(g.stdout, pushed)
				return nil
			}
			fmt.Fprintf(g.stdout, "Digest: %s\nPushed %s\n", pushed, full)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&platform, "platform", "", "push only this platform's manifest of a multi-platform image")
	fl.BoolVar(&plainHTTP, "plain-http", false, "talk to the registry over plain HTTP")
	fl.BoolVarP(&quiet, "quiet", "q", false, "print only the pushed digest")
	fl.StringVar(&hostDir, "hosts-dir", "", "registry hosts configuration root (default: berthd's config_path)")
	return cmd
}
