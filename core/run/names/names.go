// Package names makes and checks the identities of Docker-style
// containers: 64-hex ids (12 shown), adjective_noun names, and the rules a
// user-given name must follow.
package names

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"

	"github.com/containerd/errdefs"
)

// ShortLen is how many characters of an id are shown.
const ShortLen = 12

// maxName bounds names, so one fits in labels, paths and table cells.
const maxName = 128

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// Validate checks a user-given container name, Docker's rule:
// [a-zA-Z0-9][a-zA-Z0-9_.-]+ (so at least two characters).
func Validate(name string) error {
	if len(name) > maxName {
		return fmt.Errorf("container name %q is longer than %d characters: %w", name[:20]+"...", maxName, errdefs.ErrInvalidArgument)
	}
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least two characters: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// NewID returns a random 64-hex container id whose short form is not all
// digits, so a short id is never mistaken for a number (as Docker does).
func NewID() string {
	var b [32]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("read random bytes: %v", err))
		}
		id := hex.EncodeToString(b[:])
		if !allDigits(id[:ShortLen]) {
			return id
		}
	}
}

// IsID reports whether s has the form of a full id.
func IsID(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Short returns the first 12 characters of an id.
func Short(id string) string {
	if len(id) > ShortLen {
		return id[:ShortLen]
	}
	return id
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Generate returns a random adjective_noun name that taken does not
// report as in use. After many collisions it appends a digit, as Docker
// does when its space runs thin.
func Generate(taken func(string) bool) string {
	for i := 0; ; i++ {
		name := adjectives[pick(len(adjectives))] + "_" + nouns[pick(len(nouns))]
		if i >= 10 {
			name = fmt.Sprintf("%s%d", name, pick(10))
		}
		if !taken(name) {
			return name
		}
	}
}

func pick(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(fmt.Sprintf("read random bytes: %v", err))
	}
	return int(v.Int64())
}
