package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
)

// column is one column of a table listing of T.
type column[T any] struct {
	header string
	value  func(T) string
}

// render prints items as an aligned table (format "" or "table"), as a
// JSON array ("json"), or through a Go template applied to each item
// (anything containing "{{"). quiet prints only the first column.
func render[T any](w io.Writer, format string, items []T, cols []column[T], quiet bool) error {
	switch {
	case quiet:
		for _, it := range items {
			fmt.Fprintln(w, cols[0].value(it))
		}
		return nil
	case format == "json":
		if items == nil {
			items = []T{}
		}
		return writeJSON(w, items)
	case strings.Contains(format, "{{"):
		tmpl, err := template.New("format").Funcs(templateFuncs).Parse(format)
		if err != nil {
			return &ExitError{Code: 125, Err: fmt.Errorf("--format: %w", err)}
		}
		for _, it := range items {
			if err := tmpl.Execute(w, it); err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			fmt.Fprintln(w)
		}
		return nil
	case format == "" || format == "table":
		tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
		var hdr []string
		for _, c := range cols {
			hdr = append(hdr, c.header)
		}
		fmt.Fprintln(tw, strings.Join(hdr, "\t"))
		for _, it := range items {
			var row []string
			for _, c := range cols {
				row = append(row, c.value(it))
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		return tw.Flush()
	}
	return &ExitError{Code: 125, Err: fmt.Errorf("--format %q: use table, json or a Go template such as '{{.ID}}'", format)}
}

// renderObject prints one object as indented JSON or through a template.
func renderObject(g *globals, format string, v any) error {
	if format == "json" {
		return writeJSON(g.stdout, v)
	}
	if !strings.Contains(format, "{{") {
		return usageError("--format %q: use json or a Go template such as '{{.Name}}'", format)
	}
	tmpl, err := template.New("format").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return usageError("--format: %v", err)
	}
	if err := tmpl.Execute(g.stdout, v); err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	fmt.Fprintln(g.stdout)
	return nil
}

// printCreated prints what a create command made: its name (or ID), or
// with --format the object itself.
func printCreated(g *globals, format, name string, v any) error {
	if format == "" {
		fmt.Fprintln(g.stdout, name)
		return nil
	}
	return renderObject(g, format, v)
}

// renderObjects prints what an inspect command found: one indented JSON
// array (format "" or "json", [] when nothing was found) or each object
// through a template. failed, the error of those not found, is returned
// once the others are printed.
func renderObjects[T any](g *globals, format string, items []T, failed error) error {
	if format == "" || format == "json" {
		if items == nil {
			items = []T{}
		}
		if err := writeJSON(g.stdout, items); err != nil {
			return err
		}
		return failed
	}
	for _, it := range items {
		if err := renderObject(g, format, it); err != nil {
			return err
		}
	}
	return failed
}

var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	return enc.Encode(v)
}

// humanSize renders bytes in decimal units with three significant figures,
// as docker does ("4.87MB").
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.4g%s", math.Round(f*100)/100, units[i])
}

// humanDuration renders a duration the way docker's "Up 3 minutes" does.
func humanDuration(d time.Duration) string {
	s := int(d.Seconds())
	switch {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	case d.Minutes() < 2:
		return "About a minute"
	case d.Minutes() < 60:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	case math.Round(d.Hours()) == 1:
		return "About an hour"
	case d.Hours() < 48:
		return fmt.Sprintf("%d hours", int(math.Round(d.Hours())))
	case d.Hours() < 24*7*2:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d.Hours() < 24*30*2:
		return fmt.Sprintf("%d weeks", int(d.Hours()/24/7))
	case d.Hours() < 24*365*2:
		return fmt.Sprintf("%d months", int(d.Hours()/24/30))
	}
	return fmt.Sprintf("%d years", int(d.Hours()/24/365))
}

// ago renders a past time relative to now ("3 minutes ago").
func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return humanDuration(time.Since(t)) + " ago"
}

// labelString renders labels as k=v,k=v sorted.
func labelString(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
