package images

import (
	"github.com/opencontainers/go-digest"
)

// ChainIDs returns the chain ID of each prefix of a layer stack, given the
// layers' diff IDs bottom first. A chain ID names a stack of layers (the
// snapshot key of an unpacked image): the first is the bottom layer's diff
// ID, and chainID(n) = sha256(chainID(n-1) + " " + diffID(n)).
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// ChainID returns the chain ID of the whole stack; "" for no layers.
func ChainID(diffIDs []digest.Digest) digest.Digest {
	if len(diffIDs) == 0 {
		return ""
	}
	return ChainIDs(diffIDs)[len(diffIDs)-1]
}
