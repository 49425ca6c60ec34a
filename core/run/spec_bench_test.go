package run

import (
	"context"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkSpec is the spec generation of a plain `run busybox true`.
func BenchmarkSpec(b *testing.B) {
	m := New(ManagerOptions{})
	img := ocispec.Image{Config: ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"sh"}}}
	ctx := context.Background()
	for b.Loop() {
		if _, err := m.spec(ctx, "default", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Options{Cmd: []string{"true"}}, img, ""); err != nil {
			b.Fatal(err)
		}
	}
}
