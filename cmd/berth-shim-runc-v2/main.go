// Command berth-shim-runc-v2 is berth's containerd shim v2 for runc and
// crun; see package github.com/berthd/berth/runtime/shim.
//
// Build it without cgo (CGO_ENABLED=0): a static binary maps no C library,
// which keeps every shim's resident memory a megabyte smaller.
package main

import (
	"os"

	"github.com/berthd/berth/runtime/shim"
)

func main() {
	os.Exit(shim.Run(os.Args[1:]))
}
