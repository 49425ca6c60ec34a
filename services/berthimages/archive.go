package berthimages

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/images/archive"
	api "github.com/berthd/berth/proto/berth/images/v1"
)

// chunkSize is the data each Export message carries.
const chunkSize = 1 << 20

// progressEvery spaces progress messages so a fast import does not flood
// the client.
const progressEvery = 200 * time.Millisecond

// Import reads an archive from the stream into the store, then unpacks the
// imported images unless asked not to.
func (s *Service) Import(stream api.Images_ImportServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	o := first.GetOptions()
	if o == nil {
		return fmt.Errorf("the first import message must carry the options: %w", errdefs.ErrInvalidArgument)
	}
	opts, err := importOptions(o)
	if err != nil {
		return err
	}
	var sendMu sync.Mutex
	send := func(r *api.ImportResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(r)
	}
	var last time.Time
	opts.Progress = func(p archive.Progress) {
		if time.Since(last) < progressEvery {
			return
		}
		last = time.Now()
		send(&api.ImportResponse{Progress: &api.Progress{Stage: "reading", Bytes: p.Bytes, Blobs: int32(p.Blobs)}})
	}

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(copyRequests(stream, first.Data, pw)) }()
	imgs, err := archive.Import(ctx, s.content, s.images, s.leases, pr, opts)
	pr.CloseWithError(errors.New("import finished"))
	if err != nil {
		return err
	}
	resp := &api.ImportResponse{}
	for _, img := range imgs {
		s.publishCreate(ctx, img)
		resp.Images = append(resp.Images, &api.ImageRef{Name: img.Name, Target: descToProto(img.Target)})
	}
	if !o.NoUnpack && s.unpacker != nil {
		if err := s.unpackAll(ctx, imgs, o, opts.Platform, send); err != nil {
			return err
		}
	}
	return send(resp)
}

func importOptions(o *api.ImportOptions) (archive.ImportOptions, error) {
	platform, err := platformMatcher(o.Platform)
	if err != nil {
		return archive.ImportOptions{}, err
	}
	opts := archive.ImportOptions{
		Platform:     platform,
		AllPlatforms: o.AllPlatforms,
		BaseName:     o.BaseName,
		IndexName:    o.IndexName,
		DigestNames:  o.DigestNames,
	}
	return opts, nil
}

// copyRequests feeds the data of the import stream into w until the
// client closes its side.
func copyRequests(stream api.Images_ImportServer, firstData []byte, w io.Writer) error {
	if len(firstData) > 0 {
		if _, err := w.Write(firstData); err != nil {
			return err
		}
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if req.Options != nil {
			return fmt.Errorf("import options may only come in the first message: %w", errdefs.ErrInvalidArgument)
		}
		if _, err := w.Write(req.Data); err != nil {
			return err
		}
	}
}

func (s *Service) unpackAll(ctx context.Context, imgs []images.Image, o *api.ImportOptions, platform platforms.MatchComparer, send func(*api.ImportResponse) error) error {
	for _, img := range imgs {
		send(&api.ImportResponse{Progress: &api.Progress{Stage: "unpacking " + img.Name}})
		if _, _, err := s.unpacker.Unpack(ctx, img, o.Snapshotter, platform); err != nil {
			return fmt.Errorf("unpack %s: %w", img.Name, err)
		}
	}
	return nil
}

// Export streams an OCI archive of the named images.
func (s *Service) Export(req *api.ExportRequest, stream api.Images_ExportServer) error {
	ctx := stream.Context()
	if len(req.Names) == 0 {
		return fmt.Errorf("name at least one image to export: %w", errdefs.ErrInvalidArgument)
	}
	platform, err := platformMatcher(req.Platform)
	if err != nil {
		return err
	}
	var imgs []images.Image
	for _, n := range req.Names {
		img, err := s.images.Get(ctx, n)
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	w := bufio.NewWriterSize(chunkWriter{stream}, chunkSize)
	err = archive.Export(ctx, s.content, w, imgs, archive.ExportOptions{
		Platform:           platform,
		AllPlatforms:       req.AllPlatforms,
		SkipDockerManifest: req.SkipDockerManifest,
	})
	if err != nil {
		return err
	}
	return w.Flush()
}

type chunkWriter struct{ stream api.Images_ExportServer }

func (c chunkWriter) Write(p []byte) (int, error) {
	if err := c.stream.Send(&api.ExportResponse{Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}
