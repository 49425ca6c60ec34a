package cni

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/core/network"
)

// berth's filter rules for its bridge networks. The CNI firewall plugin
// is not used: it accepts everything from a container at the top of
// FORWARD, which would let containers reach other networks. Instead:
//
//	FORWARD -> BERTH-FORWARD                      (shared, never removed, like
//	                                               portmap's CNI-HOSTPORT-* chains)
//	BERTH-FORWARD:
//	  -o <bridge> -j BERTH-<hash>                 inserted first: inbound checks
//	  ...                                          run before any outbound accept
//	  -i <bridge> -j ACCEPT (or DROP if internal) appended: outbound
//	BERTH-<hash>:
//	  -i <bridge> -j ACCEPT                       within the network
//	  -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//	  -m conntrack --ctstate DNAT -j ACCEPT       published ports
//	  -j DROP                                     other networks, the outside
//
// and, in the nat table, for the networks berth masquerades itself (see
// masquerades):
//
//	POSTROUTING -> BERTH-POSTROUTING              (shared, never removed)
//	BERTH-POSTROUTING:
//	  -s <subnet> ! -o <bridge> -j MASQUERADE     traffic leaving the network
//
// One rule per network rather than the bridge plugin's chain per
// container: the plugin's ipMasq costs some fifteen iptables runs per
// container start and stop.
//
// A network's rules exist while it has attachments, and a short while
// after (see ruleGrace).
const (
	forwardChain     = "BERTH-FORWARD"
	postroutingChain = "BERTH-POSTROUTING"
)

// iptablesMu serialises berth's own rule changes within this process (the
// shared chains' creation in particular).
var iptablesMu sync.Mutex

func iptables(args ...string) (string, error) {
	cmd := exec.Command("iptables", append([]string{"-w", "10"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// retryBusy runs f again while it fails with EBUSY. nftables frees the
// references of deleted rules after the transaction that deleted them
// (in a kernel work queue), so deleting a chain right after the rules
// that jumped to it can fail for a moment with "Device or resource
// busy", most often while other programs change rules too.
func retryBusy(f func() error) error {
	var err error
	for i, wait := 0, 20*time.Millisecond; i < 6; i, wait = i+1, wait*2 {
		if err = f(); err == nil || !isBusy(err) {
			return err
		}
		time.Sleep(wait)
	}
	return err
}

func isBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Device or resource busy") || strings.Contains(msg, "Resource busy")
}

func networkChain(bridge string) string {
	sum := sha256.Sum256([]byte(bridge))
	return "BERTH-" + hex.EncodeToString(sum[:])[:12]
}

// tableState is one table as iptables-save prints it.
type tableState struct {
	chains map[string]bool
	rules  map[string]int // "-A CHAIN ..." -> how many times
}

// ruleState is the filter and nat tables.
type ruleState struct {
	filter, nat tableState
}

// readRules reads the filter and nat tables in one iptables-save run
// (the other tables it prints are skipped).
func readRules() (ruleState, error) {
	cmd := exec.Command("iptables-save")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return ruleState{}, fmt.Errorf("iptables-save: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	return parseSave(out.String()), nil
}

// parseSave reads the filter and nat tables of iptables-save's output.
func parseSave(out string) ruleState {
	st := ruleState{
		filter: tableState{chains: map[string]bool{}, rules: map[string]int{}},
		nat:    tableState{chains: map[string]bool{}, rules: map[string]int{}},
	}
	var cur *tableState
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			switch strings.TrimPrefix(line, "*") {
			case "filter":
				cur = &st.filter
			case "nat":
				cur = &st.nat
			default:
				cur = nil
			}
		case cur == nil:
		case strings.HasPrefix(line, ":"):
			if name, _, ok := strings.Cut(line[1:], " "); ok {
				cur.chains[name] = true
			}
		case strings.HasPrefix(line, "-A "):
			cur.rules[line]++
		}
	}
	return st
}

// restore applies lines to the filter and nat tables in one
// iptables-restore run, leaving everything else as it is.
func restore(filter, nat []string) error {
	var in strings.Builder
	for _, t := range []struct {
		name  string
		lines []string
	}{{"filter", filter}, {"nat", nat}} {
		if len(t.lines) > 0 {
			in.WriteString("*" + t.name + "\n" + strings.Join(t.lines, "\n") + "\nCOMMIT\n")
		}
	}
	if in.Len() == 0 {
		return nil
	}
	return retryBusy(func() error {
		cmd := exec.Command("iptables-restore", "-w", "10", "--noflush")
		cmd.Stdin = strings.NewReader(in.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("iptables-restore: %v: %s\ninput:\n%s", err, strings.TrimSpace(string(out)), in.String())
		}
		return nil
	})
}

func outboundVerdict(n *network.Network) string {
	if n.Internal {
		return "DROP"
	}
	return "ACCEPT"
}

// ensureRules installs n's rules; it is idempotent and repairs partial
// rule sets. It reads the tables once and writes the difference in one
// transaction: a network's first container pays two iptables runs, not
// a dozen.
func ensureRules(n *network.Network) error {
	iptablesMu.Lock()
	defer iptablesMu.Unlock()
	st, err := readRules()
	if err != nil {
		return err
	}
	return restore(filterLines(n, st.filter), natLines(n, st.nat))
}

// filterLines are the changes that make the filter table hold n's rules.
func filterLines(n *network.Network, st tableState) []string {
	chain := networkChain(n.Bridge)
	var lines []string
	if !st.chains[forwardChain] {
		lines = append(lines, ":"+forwardChain+" - [0:0]")
	}
	if st.rules["-A FORWARD -j "+forwardChain] == 0 {
		lines = append(lines, "-I FORWARD 1 -j "+forwardChain)
	}
	// Declaring the network's chain creates it, or flushes it for a
	// fresh fill.
	lines = append(lines, ":"+chain+" - [0:0]", "-A "+chain+" -i "+n.Bridge+" -j ACCEPT")
	if !n.Internal {
		lines = append(lines,
			"-A "+chain+" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			"-A "+chain+" -m conntrack --ctstate DNAT -j ACCEPT")
	}
	lines = append(lines, "-A "+chain+" -j DROP")
	if in := "-A " + forwardChain + " -o " + n.Bridge + " -j " + chain; st.rules[in] == 0 {
		lines = append(lines, "-I "+forwardChain+" 1 -o "+n.Bridge+" -j "+chain)
	}
	// A flip of the internal flag (a file edited by hand) leaves the other
	// verdict behind; remove it.
	for _, v := range []string{"ACCEPT", "DROP"} {
		out := "-A " + forwardChain + " -i " + n.Bridge + " -j " + v
		switch {
		case v == outboundVerdict(n) && st.rules[out] == 0:
			lines = append(lines, out)
		case v != outboundVerdict(n):
			lines = append(lines, deletions(out, st.rules[out])...)
		}
	}
	return lines
}

// masqRules are the nat rules berth keeps for n: one per IPv4 subnet of
// a network whose list says berth masquerades it (the bridge plugin's
// ipMasq is off there; lists written before berth masqueraded keep the
// plugin's). Traffic from the network that leaves it is masqueraded;
// traffic staying on the bridge is not, as with the plugin.
func masqRules(n *network.Network) []string {
	if n.Internal || !masquerades(n) {
		return nil
	}
	var out []string
	for _, s := range n.Subnets {
		if s.Subnet.Addr().Is4() {
			out = append(out, "-A "+postroutingChain+" -s "+s.Subnet.String()+" ! -o "+n.Bridge+" -j MASQUERADE")
		}
	}
	return out
}

// isMasqOf reports whether a nat rule is berth's masquerade rule of the
// bridge, whatever its subnet.
func isMasqOf(rule, bridge string) bool {
	return strings.HasPrefix(rule, "-A "+postroutingChain+" ") && strings.HasSuffix(rule, " ! -o "+bridge+" -j MASQUERADE")
}

// natLines are the changes that make the nat table hold n's rules and
// no other masquerade rule of its bridge (a subnet or flag edited by
// hand, a duplicate).
func natLines(n *network.Network, st tableState) []string {
	want := masqRules(n)
	var lines []string
	if len(want) > 0 {
		if !st.chains[postroutingChain] {
			lines = append(lines, ":"+postroutingChain+" - [0:0]")
		}
		if st.rules["-A POSTROUTING -j "+postroutingChain] == 0 {
			lines = append(lines, "-A POSTROUTING -j "+postroutingChain)
		}
	}
	for _, r := range sortedRules(st) {
		if !isMasqOf(r, n.Bridge) {
			continue
		}
		extra := st.rules[r]
		if slices.Contains(want, r) {
			extra--
		}
		lines = append(lines, deletions(r, extra)...)
	}
	for _, r := range want {
		if st.rules[r] == 0 {
			lines = append(lines, r)
		}
	}
	return lines
}

// deletions deletes an "-A ..." rule count times.
func deletions(rule string, count int) []string {
	var out []string
	for i := 0; i < count; i++ {
		out = append(out, "-D"+strings.TrimPrefix(rule, "-A"))
	}
	return out
}

func sortedRules(st tableState) []string {
	out := make([]string, 0, len(st.rules))
	for r := range st.rules {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// removeRules deletes n's rules, its masquerade rule included; missing
// ones are not an error.
func removeRules(n *network.Network) error {
	iptablesMu.Lock()
	defer iptablesMu.Unlock()
	st, err := readRules()
	if err != nil {
		return err
	}
	chain := networkChain(n.Bridge)
	var filter []string
	for _, r := range []string{
		"-A " + forwardChain + " -o " + n.Bridge + " -j " + chain,
		"-A " + forwardChain + " -i " + n.Bridge + " -j ACCEPT",
		"-A " + forwardChain + " -i " + n.Bridge + " -j DROP",
	} {
		filter = append(filter, deletions(r, st.filter.rules[r])...)
	}
	if st.filter.chains[chain] {
		filter = append(filter, "-F "+chain, "-X "+chain)
	}
	var nat []string
	for _, r := range sortedRules(st.nat) {
		if isMasqOf(r, n.Bridge) {
			nat = append(nat, deletions(r, st.nat.rules[r])...)
		}
	}
	return restore(filter, nat)
}

// sweepNAT removes nat rules the CNI plugins tagged with cniID (the
// bridge plugin's masquerade rule, portmap's DNAT jump) and the chains
// they jumped to. DEL removes them itself, except when the namespace is
// already gone: the bridge plugin then cannot learn the addresses its
// masquerade rule matched and leaves it behind.
func sweepNAT(cniID string) error {
	iptablesMu.Lock()
	defer iptablesMu.Unlock()
	out, err := iptables("-t", "nat", "-S")
	if err != nil {
		return err
	}
	tag := fmt.Sprintf(`id: \"%s\"`, cniID)
	var chains []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, tag) {
			continue
		}
		args, err := splitRule(line)
		if err != nil {
			return err
		}
		args[0] = "-D"
		if _, err := iptables(append([]string{"-t", "nat"}, args...)...); err != nil {
			return err
		}
		for i := range args {
			if args[i] == "-j" && i+1 < len(args) && strings.HasPrefix(args[i+1], "CNI-") && !strings.HasPrefix(args[i+1], "CNI-HOSTPORT-") {
				chains = append(chains, args[i+1])
			}
		}
	}
	for _, c := range chains {
		iptables("-t", "nat", "-F", c)
		retryBusy(func() error {
			_, err := iptables("-t", "nat", "-X", c)
			return err
		})
	}
	return nil
}

// splitRule splits one line of iptables -S output into arguments,
// undoing its double quotes and backslash escapes.
func splitRule(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted = !quoted
			inWord = true
		case c == ' ' && !quoted:
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unbalanced quotes in iptables rule %q", line)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

// deleteLink removes a host interface (a network's bridge); a missing one
// is not an error.
func deleteLink(name string) error {
	out, err := exec.Command("ip", "link", "delete", "dev", name).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Cannot find device") && !strings.Contains(string(out), "does not exist") {
		return fmt.Errorf("delete interface %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
