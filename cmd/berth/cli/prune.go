package cli

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// confirmPrune asks on stdin before a prune removes what, as docker does;
// only y or yes proceeds.
func confirmPrune(g *globals, what string) bool {
	fmt.Fprintf(g.stdout, "WARNING! This will remove %s not used by at least one container.\nAre you sure you want to continue? [y/N] ", what)
	line, _ := bufio.NewReader(g.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// printDeleted lists what a prune removed under "Deleted <kind>:", and
// prints nothing when it removed nothing.
func printDeleted(w io.Writer, kind string, names []string) {
	if len(names) == 0 {
		return
	}
	fmt.Fprintf(w, "Deleted %s:\n", kind)
	for _, n := range names {
		fmt.Fprintln(w, n)
	}
}

// printPruneReport is printDeleted followed by the space reclaimed, for
// the kinds whose size berthd counts.
func printPruneReport(w io.Writer, kind string, names []string, reclaimed int64) {
	printDeleted(w, kind, names)
	if len(names) > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Total reclaimed space: %s\n", humanSize(reclaimed))
}
