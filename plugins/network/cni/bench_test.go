package cni

import (
	"fmt"
	"testing"

	"github.com/berthd/berth/core/network"
)

// BenchmarkAttach measures joining the default network, with no
// published port and with one. Another container stays attached so the
// network's own rules are in place, as on a host running containers; the
// detach after each attach is not timed.
func BenchmarkAttach(b *testing.B) {
	for _, bc := range []struct {
		name  string
		ports []string
	}{{"no-ports", nil}, {"one-port", []string{"80"}}} {
		b.Run(bc.name, func(b *testing.B) {
			bridge, subnet := randomName("bb"), randomSubnet(b)
			e := newEnv(b, func(c *Config) { c.DefaultNetwork, c.DefaultBridge, c.DefaultSubnet = "berth", bridge, subnet })
			ctx := nsCtx()
			e.sandbox("resident")
			e.attach(network.AttachRequest{ContainerID: "resident", Network: "berth"})
			sb := e.sandbox("bench")
			ports, err := network.ParsePorts(bc.ports...)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := e.m.Attach(ctx, network.AttachRequest{ContainerID: "bench", Network: "berth", NetNS: sb.NetNS, Ports: ports}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := e.m.Detach(ctx, "bench", "berth"); err != nil {
					b.Fatal(fmt.Errorf("detach: %w", err))
				}
				b.StartTimer()
			}
		})
	}
}
