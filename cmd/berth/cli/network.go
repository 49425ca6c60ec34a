package cli

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	networksapi "github.com/berthd/berth/proto/berth/networks/v1"
)

func init() {
	addCommands(func(root *cobra.Command, g *globals) {
		root.AddCommand(networkCommand(g))
	})
}

// networkRow is how the CLI shows a network; templates use its field
// names ({{.Name}}, {{.Driver}}), JSON its tags.
type networkRow struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Source     string            `json:"source"`
	Subnets    []subnetRow       `json:"subnets"`
	Internal   bool              `json:"internal"`
	DNS        bool              `json:"dns"`
	Default    bool              `json:"default"`
	Bridge     string            `json:"bridge,omitempty"`
	Ports      bool              `json:"ports"`
	Labels     map[string]string `json:"labels"`
	Options    map[string]string `json:"options"`
	Plugins    []string          `json:"plugins"`
	CNIVersion string            `json:"cni_version"`
	CreatedAt  time.Time         `json:"created_at,omitzero"`
	File       string            `json:"file,omitempty"`
}

// networkInspectRow is what inspect shows: the network, its containers
// and its CNI configuration list.
type networkInspectRow struct {
	networkRow
	Containers []attachmentRow `json:"containers"`
	Config     string          `json:"config"`
}

type subnetRow struct {
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway,omitempty"`
}

type attachmentRow struct {
	Namespace string   `json:"namespace"`
	ID        string   `json:"id"`
	Name      string   `json:"name,omitempty"`
	Interface string   `json:"interface"`
	Addresses []string `json:"addresses"`
	MAC       string   `json:"mac,omitempty"`
	Ports     []string `json:"ports,omitempty"`
	Aliases   []string `json:"aliases,omitempty"`
	NetNS     string   `json:"netns"`
}

func toNetworkRow(n *networksapi.Network) networkRow {
	r := networkRow{
		ID: n.Id, Name: n.Name, Driver: n.Driver, Source: n.Source,
		Internal: n.Internal, DNS: n.Dns, Default: n.IsDefault, Bridge: n.Bridge, Ports: n.Ports,
		Labels: n.Labels, Options: n.Options, Plugins: n.Plugins, CNIVersion: n.CniVersion,
		Subnets: []subnetRow{}, File: n.File,
	}
	if n.CreatedAt != nil {
		r.CreatedAt = n.CreatedAt.AsTime()
	}
	for _, s := range n.Subnets {
		r.Subnets = append(r.Subnets, subnetRow{s.Subnet, s.Gateway})
	}
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	if r.Options == nil {
		r.Options = map[string]string{}
	}
	return r
}

func toAttachmentRow(a *networksapi.Attachment) attachmentRow {
	r := attachmentRow{Namespace: a.Namespace, ID: a.ContainerId, Name: a.Name, Interface: a.Ifname, MAC: a.Mac, Aliases: a.Aliases, NetNS: a.Netns, Addresses: []string{}}
	for _, ip := range a.Ips {
		r.Addresses = append(r.Addresses, ip.Address)
	}
	for _, i := range a.Interfaces {
		if i.Name == a.Ifname && i.Sandbox != "" && r.MAC == "" {
			r.MAC = i.Mac
		}
	}
	for _, p := range a.Ports {
		ip := p.HostIp
		if ip == "" {
			ip = "0.0.0.0"
		} else if strings.Contains(ip, ":") {
			ip = "[" + ip + "]"
		}
		r.Ports = append(r.Ports, fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.ContainerPort, p.Protocol))
	}
	return r
}

func networkCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Aliases: []string{"networks"}, Short: "manage networks", GroupID: "containers"}
	cmd.AddCommand(networkCreateCommand(g), networkLsCommand(g), networkInspectCommand(g),
		networkRmCommand(g), networkPruneCommand(g), networkConnectCommand(g), networkDisconnectCommand(g))
	return cmd
}

func networkCreateCommand(g *globals) *cobra.Command {
	var driver, subnet, gateway, format string
	var internal bool
	var labels, opts []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "create a network and print its ID",
		Args:  exactArgs(1, "NETWORK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			lbls, err := parseLabels(labels)
			if err != nil {
				return err
			}
			options, err := parseDriverOptions(opts)
			if err != nil {
				return err
			}
			nc, ctx, cancel, err := connectAPI(g, cmd.Context(), networksapi.NewNetworksClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := nc.Create(ctx, &networksapi.CreateNetworkRequest{
				Name: args[0], Driver: driver, Subnet: subnet, Gateway: gateway,
				Internal: internal, Labels: lbls, Options: options,
			})
			if err != nil {
				return err
			}
			return printCreated(g, format, resp.Network.Id, toNetworkRow(resp.Network))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&driver, "driver", "d", "bridge", "driver: bridge, macvlan or ipvlan")
	fl.StringVar(&subnet, "subnet", "", "IPv4 subnet in CIDR form (default: a free one)")
	fl.StringVar(&gateway, "gateway", "", "gateway address (default: the subnet's first)")
	fl.BoolVar(&internal, "internal", false, "no route out of the network and no published ports")
	fl.StringArrayVar(&labels, "label", nil, "label to set (K=V), repeatable")
	fl.StringArrayVarP(&opts, "opt", "o", nil, "driver option (K=V), repeatable: bridge=NAME, mtu=N; parent=IF, mode=M for macvlan/ipvlan")
	fl.StringVar(&format, "format", "", "print the network as json or through a Go template instead of its ID")
	return cmd
}

func networkLsCommand(g *globals) *cobra.Command {
	var format string
	var quiet, noTrunc bool
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "list networks (filters: name=PART, id=PREFIX, driver=D, label=K[=V], source=berth|FILE)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			match, err := parseNetworkFilters(filters)
			if err != nil {
				return err
			}
			nc, ctx, cancel, err := connectAPI(g, cmd.Context(), networksapi.NewNetworksClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := nc.List(ctx, &networksapi.ListNetworksRequest{})
			if err != nil {
				return err
			}
			var rows []networkRow
			for _, n := range resp.Networks {
				if r := toNetworkRow(n); match(r) {
					rows = append(rows, r)
				}
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
			id := func(r networkRow) string {
				if noTrunc || len(r.ID) < 12 {
					return r.ID
				}
				return r.ID[:12]
			}
			return render(g.stdout, format, rows, []column[networkRow]{
				{"NETWORK ID", id},
				{"NAME", func(r networkRow) string { return r.Name }},
				{"DRIVER", func(r networkRow) string { return r.Driver }},
				{"SUBNET", func(r networkRow) string { return orDash(subnetList(r)) }},
				{"SOURCE", func(r networkRow) string { return r.Source }},
			}, quiet)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&format, "format", "table", "output format: table, json or a Go template")
	fl.BoolVarP(&quiet, "quiet", "q", false, "print only network IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "print full network IDs")
	fl.StringArrayVarP(&filters, "filter", "f", nil, "show only networks matching K=V, repeatable")
	return cmd
}

func subnetList(r networkRow) string {
	var s []string
	for _, sn := range r.Subnets {
		s = append(s, sn.Subnet)
	}
	return strings.Join(s, ",")
}

// parseNetworkFilters reads docker-style K=V filters: values of one key
// are alternatives, different keys must all match.
func parseNetworkFilters(args []string) (func(networkRow) bool, error) {
	byKey := map[string][]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		switch {
		case !ok:
			return nil, usageError("filter %q is not KEY=VALUE", a)
		case k != "name" && k != "id" && k != "driver" && k != "label" && k != "source":
			return nil, usageError("filter %q: key %q is not name, id, driver, label or source", a, k)
		}
		byKey[k] = append(byKey[k], v)
	}
	one := func(r networkRow, k, v string) bool {
		switch k {
		case "name":
			return strings.Contains(r.Name, v)
		case "id":
			return strings.HasPrefix(r.ID, v)
		case "driver":
			return r.Driver == v
		case "source":
			return r.Source == v
		}
		lk, lv, hasValue := strings.Cut(v, "=")
		got, ok := r.Labels[lk]
		return ok && (!hasValue || got == lv)
	}
	return func(r networkRow) bool {
		for k, vs := range byKey {
			any := false
			for _, v := range vs {
				any = any || one(r, k, v)
			}
			if !any {
				return false
			}
		}
		return true
	}, nil
}

func networkInspectCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect NETWORK...",
		Short: "show networks in detail with their containers (JSON by default)",
		Args:  minArgs(1, "NETWORK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, ctx, cancel, err := connectAPI(g, cmd.Context(), networksapi.NewNetworksClient)
			if err != nil {
				return err
			}
			defer cancel()
			rows, failed := collectEach(g, args, func(name string) (networkInspectRow, error) {
				resp, err := nc.Inspect(ctx, &networksapi.InspectNetworkRequest{Name: name})
				if err != nil {
					return networkInspectRow{}, err
				}
				r := networkInspectRow{networkRow: toNetworkRow(resp.Network), Containers: []attachmentRow{}, Config: string(resp.Network.Config)}
				for _, a := range resp.Attachments {
					r.Containers = append(r.Containers, toAttachmentRow(a))
				}
				return r, nil
			})
			return renderObjects(g, format, rows, failed)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "json (default) or a Go template such as '{{.Driver}}'")
	return cmd
}

func networkRmCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NETWORK...",
		Aliases: []string{"remove"},
		Short:   "remove networks (not while containers are attached)",
		Args:    minArgs(1, "NETWORK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, ctx, cancel, err := connectAPI(g, cmd.Context(), networksapi.NewNetworksClient)
			if err != nil {
				return err
			}
			defer cancel()
			return eachArg(g, args, func(name string) error {
				_, err := nc.Remove(ctx, &networksapi.RemoveNetworkRequest{Name: name})
				return err
			})
		},
	}
}

func networkPruneCommand(g *globals) *cobra.Command {
	var force bool
	var format string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "remove every network berth created that no container uses (not the default one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !force && !confirmPrune(g, "all custom networks") {
				return nil
			}
			nc, ctx, cancel, err := connectAPI(g, cmd.Context(), networksapi.NewNetworksClient)
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := nc.Prune(ctx, &networksapi.PruneNetworksRequest{})
			if err != nil {
				return err
			}
			deleted := resp.Removed
			if deleted == nil {
				deleted = []string{}
			}
			if format != "" {
				return renderObject(g, format, struct {
					Deleted []string `json:"deleted"`
				}{deleted})
			}
			printDeleted(g.stdout, "Networks", deleted)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	fl.StringVar(&format, "format", "", "print the result as json or through a Go template")
	return cmd
}
