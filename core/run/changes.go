package run

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/oci"
)

// ApplyChanges applies Dockerfile instructions (docker commit --change)
// to an image config: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE,
// STOPSIGNAL and VOLUME. CMD and ENTRYPOINT take the JSON form
// (["a","b"]) or the shell form (run by /bin/sh -c). A bad instruction is
// errdefs.ErrInvalidArgument naming it; cfg may then be partly changed.
func ApplyChanges(cfg *ocispec.ImageConfig, changes []string) error {
	for _, c := range changes {
		if err := applyChange(cfg, strings.TrimSpace(c)); err != nil {
			return fmt.Errorf("change %q: %w", c, err)
		}
	}
	return nil
}

func applyChange(cfg *ocispec.ImageConfig, c string) error {
	instr, rest, _ := strings.Cut(c, " ")
	rest = strings.TrimSpace(rest)
	if rest == "" {
		return invalidf("%s needs an argument", instr)
	}
	switch strings.ToUpper(instr) {
	case "CMD":
		args, err := commandForm(rest)
		cfg.Cmd = args
		return err
	case "ENTRYPOINT":
		args, err := commandForm(rest)
		cfg.Entrypoint = args
		return err
	case "ENV":
		pairs, err := keyValues(rest, true)
		if err != nil {
			return err
		}
		for _, kv := range pairs {
			env, err := oci.MergeEnv(cfg.Env, []string{kv[0] + "=" + kv[1]})
			if err != nil {
				return err
			}
			cfg.Env = env
		}
	case "LABEL":
		pairs, err := keyValues(rest, false)
		if err != nil {
			return err
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range pairs {
			cfg.Labels[kv[0]] = kv[1]
		}
	case "WORKDIR":
		dir := unquote(rest)
		if !path.IsAbs(dir) {
			dir = path.Join("/", cfg.WorkingDir, dir)
		}
		cfg.WorkingDir = path.Clean(dir)
	case "USER":
		cfg.User = unquote(rest)
	case "STOPSIGNAL":
		if _, err := oci.ParseSignal(unquote(rest)); err != nil {
			return err
		}
		cfg.StopSignal = unquote(rest)
	case "EXPOSE":
		return expose(cfg, strings.Fields(rest))
	case "VOLUME":
		vols, err := listForm(rest)
		if err != nil {
			return err
		}
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range vols {
			if !path.IsAbs(v) {
				return invalidf("volume %q is not an absolute path", v)
			}
			cfg.Volumes[v] = struct{}{}
		}
	default:
		return invalidf("unknown instruction %q (use CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL or VOLUME)", instr)
	}
	return nil
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// commandForm reads ["a","b"] or a shell command.
func commandForm(s string) ([]string, error) {
	if strings.HasPrefix(s, "[") {
		var args []string
		if err := json.Unmarshal([]byte(s), &args); err != nil {
			return nil, invalidf("not a JSON array of strings: %v", err)
		}
		return args, nil
	}
	return []string{"/bin/sh", "-c", s}, nil
}

// listForm reads ["a","b"] or space-separated words.
func listForm(s string) ([]string, error) {
	if strings.HasPrefix(s, "[") {
		return commandForm(s)
	}
	return strings.Fields(s), nil
}

// keyValues reads `k=v k2="v 2"`, or with legacy allowed `KEY value with
// spaces`.
func keyValues(s string, legacy bool) ([][2]string, error) {
	words, err := splitQuoted(s)
	if err != nil {
		return nil, err
	}
	if legacy && !strings.Contains(words[0], "=") {
		k, v, _ := strings.Cut(s, " ")
		return [][2]string{{k, unquote(strings.TrimSpace(v))}}, nil
	}
	var out [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, invalidf("%q is not key=value", w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// splitQuoted splits on spaces outside double or single quotes and
// removes the quotes.
func splitQuoted(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, invalidf("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, invalidf("nothing to set")
	}
	return words, nil
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

func expose(cfg *ocispec.ImageConfig, ports []string) error {
	if cfg.ExposedPorts == nil {
		cfg.ExposedPorts = map[string]struct{}{}
	}
	for _, p := range ports {
		num, proto, hasProto := strings.Cut(strings.ToLower(p), "/")
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || n > 65535 {
			return invalidf("port %q is not a number from 1 to 65535", p)
		}
		if !hasProto {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			return invalidf("port %q: protocol must be tcp, udp or sctp", p)
		}
		cfg.ExposedPorts[fmt.Sprintf("%d/%s", n, proto)] = struct{}{}
	}
	return nil
}
