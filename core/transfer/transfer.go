// Package transfer moves images between registries and berthd's stores.
//
// Pull resolves a reference, fetches the index, the platform manifests and
// their blobs (core/remotes: verified, resumable, each blob fetched once
// however many pulls want it, within a daemon-wide bound on concurrent
// downloads), applies each layer into its snapshot as soon as it and its
// parent are there while later layers still download (core/unpack), and
// then points the image record at what it pulled. Push sends an image from
// the store to a registry, compressing layers that were never compressed
// (once: the result is kept and recorded). Both report progress per blob.
//
// Every pull and push works under a temporary lease of its own, so that
// what a failed or crashed one leaves is garbage collected, and never
// keeps credentials: they come per request from the caller.
package transfer

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/berthd/berth/core/content"
	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/leases"
	"github.com/berthd/berth/core/remotes"
	"github.com/berthd/berth/core/remotes/auth"
	"github.com/berthd/berth/core/remotes/hosts"
	"github.com/berthd/berth/core/snapshots"
	"github.com/berthd/berth/core/unpack"
)

// DefaultHostDir is where hosts.toml folders are looked for when the
// configuration names no other place.
const DefaultHostDir = "/etc/berth/certs.d"

// leaseExpiry bounds a pull's or push's lease should berthd die without
// deleting it and without restarting (a restart drops it at once).
const leaseExpiry = 24 * time.Hour

// SnapshotterFunc resolves a snapshotter name ("" meaning the default for
// the context's namespace) to the name used and the snapshotter.
type SnapshotterFunc func(ctx context.Context, name string) (string, snapshots.Snapshotter, error)

// Config is what an Engine works with. Content, Images and Leases are the
// namespaced stores of core/metadata.
type Config struct {
	Content content.Store
	Images  images.Store
	Leases  leases.Manager
	// Unpacker and Snapshotter, both set, let pulls unpack. The unpacker
	// should be built with TrackReads and TrackApplies for extraction
	// progress.
	Unpacker    *unpack.Unpacker
	Snapshotter SnapshotterFunc
	// Events, when set, is told of image records created and updated.
	Events events.Publisher
	// MaxConcurrentDownloads bounds blob downloads over all requests
	// together (and, separately, uploads); default 3.
	MaxConcurrentDownloads int
	// HostDir is the hosts.toml root used when a request names none;
	// default DefaultHostDir.
	HostDir string
	// UserAgent is sent to registries; default "berth".
	UserAgent string
	// ScratchDir holds layers worked on ahead of their turn during pulls
	// (extracted, or inflated, on disk rather than in memory; on the
	// snapshotters' filesystem, so that extracted layers can be moved
	// into their snapshots); "" turns that off.
	// Anything in it when the engine starts is a leftover and removed.
	ScratchDir string
	Logger     *slog.Logger
}

// Engine pulls and pushes. It is safe for concurrent use.
type Engine struct {
	cfg    Config
	limits *remotes.Limits
	log    *slog.Logger
	// inflaters bounds the layers worked on ahead over all pulls, one per
	// core (the chain's own layer runs beside them).
	inflaters chan struct{}
}

// New returns an Engine. A ScratchDir that cannot be made turns inflating
// ahead off (logged): pulls still work.
func New(cfg Config) *Engine {
	if cfg.HostDir == "" {
		cfg.HostDir = DefaultHostDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ScratchDir != "" {
		err := os.RemoveAll(cfg.ScratchDir)
		if err == nil {
			err = os.MkdirAll(cfg.ScratchDir, 0o700)
		}
		if err != nil {
			cfg.Logger.Warn("pull scratch folder unusable; layers will not be inflated ahead", "dir", cfg.ScratchDir, "error", err)
			cfg.ScratchDir = ""
		}
	}
	return &Engine{
		cfg: cfg, limits: remotes.NewLimits(cfg.MaxConcurrentDownloads), log: cfg.Logger,
		inflaters: make(chan struct{}, max(1, runtime.NumCPU())),
	}
}

// Registry says how one request reaches its registry.
type Registry struct {
	// HostDir is the hosts.toml root; "" means the engine's.
	HostDir string
	// PlainHTTP makes the registry's own server use plain HTTP (mirrors
	// follow their hosts.toml entries).
	PlainHTTP bool
	// Header is sent with every request.
	Header http.Header
	// Credentials is asked for a host's credentials when the host
	// challenges a request; nil means anonymous. Answers are used for
	// this request only and never logged.
	Credentials func(ctx context.Context, host string) (auth.Credential, error)
}

// CredentialsFrom adapts a credential store (such as one read from a
// Docker config.json) for Registry.Credentials.
func CredentialsFrom(s *auth.Store) func(ctx context.Context, host string) (auth.Credential, error) {
	return func(_ context.Context, host string) (auth.Credential, error) { return s.Get(host), nil }
}

func (e *Engine) resolver(r Registry) *remotes.Resolver {
	dir := r.HostDir
	if dir == "" {
		dir = e.cfg.HostDir
	}
	return remotes.NewResolver(remotes.Options{
		Hosts:          hosts.Options{ConfigDir: dir, PlainHTTP: r.PlainHTTP},
		CredentialFunc: r.Credentials,
		Header:         r.Header,
		Limits:         e.limits,
		UserAgent:      e.cfg.UserAgent,
		Logger:         e.log,
	})
}

// withLease runs the rest of a request under a temporary lease of its
// own; done deletes it, letting garbage collection take whatever the
// request stored that nothing else references.
func (e *Engine) withLease(ctx context.Context, what string) (context.Context, func(), error) {
	l, err := e.cfg.Leases.Create(ctx, leases.WithTemporary(), leases.WithExpiration(leaseExpiry),
		leases.WithLabels(map[string]string{"io.berth.transfer": what}))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: create lease: %w", what, err)
	}
	done := func() {
		if err := e.cfg.Leases.Delete(context.WithoutCancel(ctx), l); err != nil {
			e.log.WarnContext(ctx, "delete transfer lease", "lease", l.ID, "error", err)
		}
	}
	return leases.WithLease(ctx, l.ID), done, nil
}
