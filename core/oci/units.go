package oci

import (
	"context"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ParseSize parses a docker-style byte size: a number with an optional
// fraction and an optional binary unit b, k, m, g, t or p (any case,
// optionally followed by "i" and/or "b": "512k", "256m", "1.5g", "1GiB",
// "100"). Negative, malformed and overflowing sizes are ErrInvalidArgument.
func ParseSize(s string) (int64, error) {
	num, mult, ok := splitSize(strings.TrimSpace(s))
	if !ok {
		return 0, invalid("size %q is not a number with an optional unit b, k, m, g, t or p", s)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, invalid("size %q is not a number with an optional unit b, k, m, g, t or p", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	// Fractions of a byte round down, as Docker's float conversion does.
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, invalid("size %q is too large", s)
	}
	return n.Int64(), nil
}

var sizeUnits = map[byte]int64{'b': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40, 'p': 1 << 50}

// splitSize separates "1.5gib" into "1.5" and 1<<30.
func splitSize(s string) (num string, mult int64, ok bool) {
	end := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end < 0 {
		end = len(s)
	}
	num, unit := s[:end], strings.ToLower(strings.TrimPrefix(s[end:], " "))
	if num == "" || num[0] == '.' || num[len(num)-1] == '.' || strings.Count(num, ".") > 1 {
		return "", 0, false
	}
	if unit == "" {
		return num, 1, true
	}
	mult, ok = sizeUnits[unit[0]]
	if !ok {
		return "", 0, false
	}
	switch rest := unit[1:]; rest {
	case "", "b", "ib":
		if unit[0] == 'b' && rest != "" {
			return "", 0, false
		}
		return num, mult, true
	case "i":
		return num, mult, unit[0] != 'b'
	}
	return "", 0, false
}

// ParseCPUs parses docker --cpus ("1.5", "0.25", "2") into billionths of
// a CPU. More than 9 decimals, negative and malformed values are
// ErrInvalidArgument; WithCPUs checks the range against the host.
func ParseCPUs(s string) (int64, error) {
	v := strings.TrimSpace(s)
	if strings.HasPrefix(v, "-") {
		return 0, invalid("cpus %q is negative", s)
	}
	if v == "" || strings.Trim(v, "0123456789.") != "" || strings.Count(v, ".") > 1 || v == "." {
		return 0, invalid("cpus %q is not a decimal number", s)
	}
	r, ok := new(big.Rat).SetString(v)
	if !ok {
		return 0, invalid("cpus %q is not a decimal number", s)
	}
	r.Mul(r, big.NewRat(1e9, 1))
	if !r.IsInt() {
		return 0, invalid("cpus %q has more than 9 decimal places", s)
	}
	if !r.Num().IsInt64() {
		return 0, invalid("cpus %q is too large", s)
	}
	return r.Num().Int64(), nil
}

// rlimitNames are the resources docker --ulimit names, without RLIMIT_.
var rlimitNames = []string{
	"as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue",
	"nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",
}

// ParseUlimit parses docker --ulimit "name=soft[:hard]" (hard defaults to
// soft; -1 means unlimited) into an rlimit. Unknown names, soft above hard
// and malformed numbers are ErrInvalidArgument.
func ParseUlimit(s string) (specs.POSIXRlimit, error) {
	name, limits, ok := strings.Cut(s, "=")
	if !ok || name == "" || limits == "" {
		return specs.POSIXRlimit{}, invalid("ulimit %q is not of the form name=soft[:hard]", s)
	}
	softStr, hardStr, hasHard := strings.Cut(limits, ":")
	if !hasHard {
		hardStr = softStr
	}
	soft, err1 := parseRlimitValue(softStr)
	hard, err2 := parseRlimitValue(hardStr)
	if err1 != nil || err2 != nil {
		return specs.POSIXRlimit{}, invalid("ulimit %q has a value that is not a number or -1", s)
	}
	r := specs.POSIXRlimit{Type: "RLIMIT_" + strings.ToUpper(name), Soft: soft, Hard: hard}
	if err := validateRlimits([]specs.POSIXRlimit{r}); err != nil {
		return specs.POSIXRlimit{}, err
	}
	return r, nil
}

func parseRlimitValue(s string) (uint64, error) {
	if s == "-1" {
		return math.MaxUint64, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func validateRlimits(rs []specs.POSIXRlimit) error {
	for _, r := range rs {
		name, ok := strings.CutPrefix(r.Type, "RLIMIT_")
		if !ok || !slices.Contains(rlimitNames, strings.ToLower(name)) || strings.ToUpper(name) != name {
			return invalid("unknown rlimit %q", r.Type)
		}
		if r.Soft > r.Hard {
			return invalid("rlimit %s soft limit %d is above its hard limit %d", r.Type, r.Soft, r.Hard)
		}
	}
	return nil
}

// WithRlimits sets rlimits, replacing ones of the same type.
func WithRlimits(rlimits ...specs.POSIXRlimit) SpecOpt {
	return func(_ context.Context, s *specs.Spec) error {
		if err := validateRlimits(rlimits); err != nil {
			return err
		}
		p := ensureProcess(s)
		for _, r := range rlimits {
			i := slices.IndexFunc(p.Rlimits, func(x specs.POSIXRlimit) bool { return x.Type == r.Type })
			if i >= 0 {
				p.Rlimits[i] = r
			} else {
				p.Rlimits = append(p.Rlimits, r)
			}
		}
		return nil
	}
}
