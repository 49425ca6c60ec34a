// Package protoconv converts between core types and the containerd API's
// protobuf types, for the services and the CLI.
package protoconv

import (
	"fmt"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthd/berth/core/mount"
)

// Timestamp converts t, leaving the zero time nil.
func Timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Time converts ts, nil giving the zero time.
func Time(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// Digest parses and validates a digest from a request field.
func Digest(field, s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%s %q is not a valid digest: %v: %w", field, s, err, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// DescriptorToProto converts an OCI descriptor.
func DescriptorToProto(d ocispec.Descriptor) *types.Descriptor {
	return &types.Descriptor{
		MediaType:   d.MediaType,
		Digest:      d.Digest.String(),
		Size:        d.Size,
		Annotations: d.Annotations,
	}
}

// DescriptorFromProto converts and validates an API descriptor.
func DescriptorFromProto(field string, d *types.Descriptor) (ocispec.Descriptor, error) {
	if d == nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s is required: %w", field, errdefs.ErrInvalidArgument)
	}
	dg, err := Digest(field+".digest", d.Digest)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: dg, Size: d.Size, Annotations: d.Annotations}, nil
}

// MountsToProto converts mounts.
func MountsToProto(ms []mount.Mount) []*types.Mount {
	out := make([]*types.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}

// MountsFromProto converts API mounts.
func MountsFromProto(ms []*types.Mount) []mount.Mount {
	out := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}
