// Command berthd is berth's daemon.
package main

import (
	"fmt"
	"os"

	"github.com/berthd/berth/cmd/berthd/command"
)

func main() {
	if err := command.New().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "berthd: %v\n", err)
		os.Exit(1)
	}
}
