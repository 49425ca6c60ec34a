package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(portCommand(g))
	})
}

// portCommand lists a container's published ports. berth records them
// with the container; publishing them is the network wiring's part, so
// until it lands containers have none.
func portCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short:   "list a container's published ports",
		GroupID: "containers",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			want, proto := 0, "tcp"
			if len(args) == 2 {
				p, pr, hasProto := strings.Cut(args[1], "/")
				n, err := strconv.Atoi(p)
				if err != nil || n < 1 || n > 65535 || (hasProto && pr != "tcp" && pr != "udp" && pr != "sctp") {
					return usageError("invalid port %q: want PORT or PORT/tcp|udp|sctp", args[1])
				}
				want = n
				if hasProto {
					proto = pr
				}
			}
			c, ctx, cancel, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			info, err := inspectContainer(ctx, c, args[0])
			if err != nil {
				return err
			}
			found := false
			for _, p := range info.Ports {
				ip := p.HostIp
				if ip == "" {
					ip = "0.0.0.0"
				}
				switch {
				case want == 0:
					fmt.Fprintf(g.stdout, "%d/%s -> %s:%d\n", p.ContainerPort, p.Protocol, ip, p.HostPort)
				case int(p.ContainerPort) == want && p.Protocol == proto:
					fmt.Fprintf(g.stdout, "%s:%d\n", ip, p.HostPort)
					found = true
				}
			}
			if want != 0 && !found {
				return fmt.Errorf("no public port '%d/%s' published for %s", want, proto, args[0])
			}
			return nil
		},
	}
}
