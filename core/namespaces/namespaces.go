// Package namespaces carries the namespace of a request through a context.
// Every object in berth (image, container, lease, snapshot key, blob label)
// belongs to one namespace; clients name it per request.
package namespaces

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/identifiers"
)

const (
	// GRPCHeader is the gRPC metadata key clients put the namespace in.
	GRPCHeader = "containerd-namespace"
	// TTRPCHeader is the ttrpc metadata key.
	TTRPCHeader = "containerd-namespace-ttrpc"
	// Default is the namespace the CLI uses when none is given.
	Default = "default"
	// EnvVar names the namespace in the CLI's environment.
	EnvVar = "BERTH_NAMESPACE"
)

type key struct{}

// WithNamespace returns ctx carrying namespace ns.
func WithNamespace(ctx context.Context, ns string) context.Context {
	return context.WithValue(ctx, key{}, ns)
}

// Namespace returns the namespace ctx carries.
func Namespace(ctx context.Context) (string, bool) {
	ns, ok := ctx.Value(key{}).(string)
	return ns, ok && ns != ""
}

// NamespaceRequired returns the namespace ctx carries, validated, or an
// error clients understand when there is none.
func NamespaceRequired(ctx context.Context) (string, error) {
	ns, ok := Namespace(ctx)
	if !ok {
		return "", fmt.Errorf("namespace is required: %w", errdefs.ErrFailedPrecondition)
	}
	if err := identifiers.Validate(ns); err != nil {
		return "", fmt.Errorf("namespace %q: %w", ns, err)
	}
	return ns, nil
}

// FromEnv returns the namespace named by BERTH_NAMESPACE, or Default.
func FromEnv() string {
	if ns := os.Getenv(EnvVar); ns != "" {
		return ns
	}
	return Default
}
