package cni

import (
	"os"
	"strings"
	"testing"
)

// sharedChains are the chains meant to outlive every network: berth's
// BERTH-FORWARD and BERTH-POSTROUTING and portmap's top-level ones, with
// the rules that jump to them.
var sharedChains = []struct{ table, chain string }{
	{"filter", forwardChain},
	{"nat", postroutingChain},
	{"nat", "CNI-HOSTPORT-DNAT"},
	{"nat", "CNI-HOSTPORT-MASQ"},
	{"nat", "CNI-HOSTPORT-SETMARK"},
}

// TestMain removes the shared chains the tests created, when they are
// empty again: a daemon keeps them for good, tests leave the host as they
// found it.
func TestMain(m *testing.M) {
	existed := map[string]bool{}
	if os.Geteuid() == 0 {
		for _, c := range sharedChains {
			if _, err := iptables("-t", c.table, "-S", c.chain); err == nil {
				existed[c.chain] = true
			}
		}
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		// portmap's chains go only when no container anywhere has a
		// published port (its DNAT chain is empty).
		out, err := iptables("-t", "nat", "-S", "CNI-HOSTPORT-DNAT")
		natIdle := err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) == 1
		for _, c := range sharedChains {
			if !existed[c.chain] && (c.table == "filter" || c.chain == postroutingChain || natIdle) {
				removeSharedChain(c.table, c.chain)
			}
		}
	}
	os.Exit(code)
}

func removeSharedChain(table, chain string) {
	out, err := iptables("-t", table, "-S", chain)
	if err != nil {
		return
	}
	// SETMARK and MASQ hold a fixed rule of portmap's own (twice when two
	// first ADDs raced); anything else means someone still uses the
	// chain.
	own := map[string]string{"CNI-HOSTPORT-SETMARK": "-j MARK --set-xmark", "CNI-HOSTPORT-MASQ": "-j MASQUERADE"}[chain]
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "-A ") && (own == "" || !strings.Contains(line, own)) {
			return
		}
	}
	all, _ := iptables("-t", table, "-S")
	var jumps [][]string
	for _, line := range strings.Split(all, "\n") {
		if strings.HasPrefix(line, "-A ") && strings.Contains(line, "-j "+chain) && !strings.HasPrefix(line, "-A "+chain+" ") {
			if args, err := splitRule(line); err == nil {
				jumps = append(jumps, args)
			}
		}
	}
	for _, j := range jumps {
		j[0] = "-D"
		iptables(append([]string{"-t", table}, j...)...)
	}
	iptables("-t", table, "-F", chain)
	if _, err := iptables("-t", table, "-X", chain); err != nil {
		// Someone started using it meanwhile: put the jumps back.
		for _, j := range jumps {
			j[0] = "-A"
			iptables(append([]string{"-t", table}, j...)...)
		}
	}
}
