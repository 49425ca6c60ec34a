package cli

import "fmt"

// The commands that take several arguments (rm, inspect, wait, ...) do
// what they can: each argument's failure is printed as it happens, the
// others go on, and the command exits 1 at the end if any failed. The
// helpers below differ only in what a success prints.

// eachArg runs f for every argument, printing each success's argument and
// each failure's error; the command fails if any did.
func eachArg(g *globals, args []string, f func(string) error) error {
	return reportEach(g, args, func(a string) (string, error) { return a, f(a) })
}

// reportEach runs f for every argument, printing the line f returns for
// each success (as soon as it has it) and each failure's error; the
// command fails if any did.
func reportEach(g *globals, args []string, f func(string) (string, error)) error {
	return tryEach(g, args, func(a string) error {
		line, err := f(a)
		if err == nil {
			fmt.Fprintln(g.stdout, line)
		}
		return err
	})
}

// collectEach runs f for every argument and returns the results of those
// that succeeded, printing each failure's error; the error it returns
// (exit status 1) says whether any failed.
func collectEach[T any](g *globals, args []string, f func(string) (T, error)) ([]T, error) {
	var out []T
	failed := tryEach(g, args, func(a string) error {
		v, err := f(a)
		if err == nil {
			out = append(out, v)
		}
		return err
	})
	return out, failed
}

// tryEach runs f for every argument, printing each failure's error; the
// command fails if any did.
func tryEach(g *globals, args []string, f func(string) error) error {
	var failed error
	for _, a := range args {
		if err := f(a); err != nil {
			fmt.Fprintf(g.stderr, "berth: %s\n", describe(err, g.address))
			failed = &ExitError{Code: 1}
		}
	}
	return failed
}

// eachArgQuiet runs f for every argument, printing nothing for a success
// and "ARG: error" for a failure, as the ctr-style commands do.
func eachArgQuiet(g *globals, args []string, f func(string) error) error {
	var failed error
	for _, a := range args {
		if err := f(a); err != nil {
			fmt.Fprintf(g.stderr, "berth: %s: %v\n", a, err)
			failed = &ExitError{Code: 1}
		}
	}
	return failed
}
