package leases

import (
	"context"
	"time"
)

// Lease keeps the resources attached to it from garbage collection until it
// is deleted or its expiry label passes.
type Lease struct {
	ID        string
	CreatedAt time.Time
	Labels    map[string]string
}

// Resource is one object held by a lease: Type is "content",
// "snapshots/<snapshotter>" or "ingests"; ID its digest, key or ref.
type Resource struct {
	ID   string
	Type string
}

// Label keys with a meaning to the lease manager.
const (
	// LabelExpire holds an RFC 3339 time after which the lease is
	// collected.
	LabelExpire = "containerd.io/gc.expire"
	// LabelFlat marks a lease that protects only the resources attached to
	// it, not what they reference.
	LabelFlat = "containerd.io/gc.flat"
	// LabelTemporary marks a lease berthd takes for one of its own
	// operations (an import, a pull). Such a lease means nothing once the
	// berthd that took it is gone, so berthd deletes them when it starts:
	// what a crashed operation left behind is then collected at once
	// instead of when the lease expires.
	LabelTemporary = "berth.io/lease.temporary"
)

// Opt configures a lease being created.
type Opt func(*Lease) error

// WithID names the lease (otherwise a random id is chosen).
func WithID(id string) Opt {
	return func(l *Lease) error {
		l.ID = id
		return nil
	}
}

// WithLabels sets labels on the lease.
func WithLabels(labels map[string]string) Opt {
	return func(l *Lease) error {
		if l.Labels == nil {
			l.Labels = map[string]string{}
		}
		for k, v := range labels {
			l.Labels[k] = v
		}
		return nil
	}
}

// WithTemporary marks the lease as belonging to this berthd's lifetime.
func WithTemporary() Opt {
	return WithLabels(map[string]string{LabelTemporary: "true"})
}

// WithExpiration sets the expiry label to now + d.
func WithExpiration(d time.Duration) Opt {
	return func(l *Lease) error {
		if l.Labels == nil {
			l.Labels = map[string]string{}
		}
		l.Labels[LabelExpire] = time.Now().Add(d).UTC().Format(time.RFC3339)
		return nil
	}
}

// DeleteOptions change how Delete behaves.
type DeleteOptions struct {
	// Synchronous runs garbage collection before Delete returns.
	Synchronous bool
}

// DeleteOpt sets a DeleteOptions field.
type DeleteOpt func(context.Context, *DeleteOptions) error

// SynchronousDelete makes Delete wait for garbage collection.
func SynchronousDelete(_ context.Context, o *DeleteOptions) error {
	o.Synchronous = true
	return nil
}

// Manager keeps leases in the namespace of the context.
type Manager interface {
	Create(ctx context.Context, opts ...Opt) (Lease, error)
	Delete(ctx context.Context, lease Lease, opts ...DeleteOpt) error
	// List returns leases matching any of filters (id, labels.<key>).
	List(ctx context.Context, filters ...string) ([]Lease, error)
	AddResource(ctx context.Context, lease Lease, r Resource) error
	DeleteResource(ctx context.Context, lease Lease, r Resource) error
	ListResources(ctx context.Context, lease Lease) ([]Resource, error)
}
