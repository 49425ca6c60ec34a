// Package leases holds the lease a request works under. Resources (blobs,
// snapshots, ingests) created under a lease are kept from garbage
// collection until the lease is deleted or expires.
package leases

import "context"

// GRPCHeader is the gRPC metadata key clients put the lease id in.
const GRPCHeader = "containerd-lease"

type key struct{}

// WithLease returns ctx carrying lease id.
func WithLease(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// FromContext returns the lease ctx carries.
func FromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(key{}).(string)
	return id, ok && id != ""
}
