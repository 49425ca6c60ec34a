package cli

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// parseLabels turns ["k=v", "k2"] into a map; a bare key gets "".
func parseLabels(args []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		if k == "" {
			return nil, &ExitError{Code: 125, Err: fmt.Errorf("label %q: key must not be empty", a)}
		}
		out[k] = v
	}
	return out, nil
}

func printLabels(g *globals, m map[string]string) {
	for _, kv := range strings.Split(labelString(m), ",") {
		if kv != "" {
			fmt.Fprintln(g.stdout, kv)
		}
	}
}

// printOrSetLabels is the body of the `label NAME [K=V...]` commands of
// namespaces, content and snapshots: given the name alone it prints the
// object's labels (from get); else it sets the labels given (K= removes
// K) through set, with a field mask naming just those labels so that the
// others stay.
func printOrSetLabels(g *globals, args []string,
	get func(name string) (map[string]string, error),
	set func(name string, labels map[string]string, mask *fieldmaskpb.FieldMask) error) error {
	if len(args) == 1 {
		labels, err := get(args[0])
		if err != nil {
			return err
		}
		printLabels(g, labels)
		return nil
	}
	labels, err := parseLabels(args[1:])
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(labels))
	for k := range labels {
		paths = append(paths, "labels."+k)
	}
	return set(args[0], labels, &fieldmaskpb.FieldMask{Paths: paths})
}
