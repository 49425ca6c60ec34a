// Command berth is berth's command line: Docker-style everyday commands
// and ctr-style administration, a thin client over berthd's API.
package main

import (
	"os"

	"github.com/berthd/berth/cmd/berth/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
