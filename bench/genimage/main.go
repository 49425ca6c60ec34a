// Command genimage writes deterministic benchmark images (see
// testimages.GenerateBench) as an OCI layout and/or OCI archive.
//
//	genimage -oci-archive /tmp/bench.tar                      # 6 layers, 300 MiB
//	genimage -count 3 -shared 3 -oci-layout /tmp/bench        # 3 images sharing 3 base layers
//	genimage -layers 10 -size 1G -seed 7 -name example.com/big:v1 -oci-archive big.tar
//
// With -count N > 1, image k (1..N) uses seed+k-1 and the tag "<tag>-k".
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berthd/berth/integration/testimages"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		slog.Error("genimage failed", "err", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("genimage", flag.ContinueOnError)
	spec := testimages.BenchSpec{}
	size := fl.String("size", "300M", "total uncompressed file bytes over all layers (suffix K, M or G)")
	fl.IntVar(&spec.Layers, "layers", 6, "layers per image")
	fl.Uint64Var(&spec.Seed, "seed", 1, "content seed of the non-shared layers")
	fl.IntVar(&spec.SharedLayers, "shared", 0, "leading layers generated from -base-seed, shared by images that differ only in -seed")
	fl.Uint64Var(&spec.BaseSeed, "base-seed", 0, "content seed of the shared layers")
	fl.StringVar(&spec.Name, "name", testimages.BenchName, "image reference")
	fl.BoolVar(&spec.Busybox, "busybox", true, "put busybox into the first layer so the image runs sh")
	count := fl.Int("count", 1, "number of images (seeds seed..seed+count-1)")
	layoutDir := fl.String("oci-layout", "", "write an OCI layout into this directory")
	archive := fl.String("oci-archive", "", "write an OCI archive (tar of the layout) to this file")
	if err := fl.Parse(args); err != nil {
		return err
	}
	var err error
	if spec.Size, err = parseSize(*size); err != nil {
		return err
	}
	if *layoutDir == "" && *archive == "" {
		return fmt.Errorf("give -oci-layout and/or -oci-archive")
	}
	dir := *layoutDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "genimage-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	if err := generate(dir, spec, *count); err != nil {
		return err
	}
	if *archive != "" {
		return writeArchive(*archive, dir)
	}
	return nil
}

func generate(dir string, spec testimages.BenchSpec, count int) error {
	for k := 1; k <= count; k++ {
		s := spec
		if count > 1 {
			s.Seed = spec.Seed + uint64(k-1)
			s.Name = fmt.Sprintf("%s-%d", withTag(spec.Name), k)
		}
		start := time.Now()
		desc, err := testimages.GenerateBench(dir, s)
		if err != nil {
			return err
		}
		fmt.Printf("%s\t%s\t%s\n", s.Name, desc.Digest, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// withTag makes sure name ends in a tag that a suffix can extend.
func withTag(name string) string {
	if strings.LastIndex(name, ":") > strings.LastIndex(name, "/") {
		return name
	}
	return name + ":latest"
}

func writeArchive(path, dir string) error {
	return testimages.SaveFile(path, func(w io.Writer) error {
		return testimages.WriteLayoutArchive(w, dir)
	})
}

// parseSize reads "300M", "1G", "4096".
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional K, M or G suffix", s)
	}
	return n * mult, nil
}
