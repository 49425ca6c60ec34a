// Package reference parses and normalises image references the way Docker
// and containerd users write them: "busybox", "user/app:1",
// "localhost:5000/x", "127.0.0.1:5000/x@sha256:…", with tag, digest or both.
//
// The grammar is the one of the distribution project: a name made of an
// optional registry domain and slash-separated lowercase path components, an
// optional ":tag" and an optional "@algorithm:hex" digest.
package reference

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

const (
	// DefaultDomain is the registry a name without a domain belongs to.
	DefaultDomain = "docker.io"
	// DefaultTag is the tag ParseNormalized adds when neither tag nor
	// digest is given.
	DefaultTag = "latest"
	// officialRepoPrefix is the namespace of Docker Hub's official images.
	officialRepoPrefix = "library/"
	// legacyDefaultDomain is Docker Hub's old name, folded into DefaultDomain.
	legacyDefaultDomain = "index.docker.io"

	maxNameLength = 255
	maxTagLength  = 128
)

// Reference is a parsed image reference. Domain and Path are always set;
// Tag, Digest or both may be empty.
type Reference struct {
	// Domain is the registry host, with port when given ("docker.io",
	// "localhost:5000", "[::1]:5000").
	Domain string
	// Path is the repository inside the registry ("library/busybox").
	Path string
	// Tag is the tag without its colon.
	Tag string
	// Digest pins the content; it wins over Tag when resolving.
	Digest digest.Digest
}

// Parse parses a fully qualified reference: the first path component must
// be a registry domain. No defaults are added; use ParseNormalized for the
// short forms people type.
func Parse(s string) (Reference, error) {
	name, tag, dgst, err := splitObject(s)
	if err != nil {
		return Reference{}, err
	}
	domain, path, ok := strings.Cut(name, "/")
	if !ok || !looksLikeDomain(domain) {
		return Reference{}, invalid(s, "name %q has no registry domain (want host[:port]/path)", name)
	}
	return build(s, domain, path, tag, dgst)
}

// ParseNormalized parses a reference as Docker does: a missing domain means
// docker.io, a single-component Docker Hub name lives under "library/",
// index.docker.io is docker.io, and a name with neither tag nor digest gets
// the tag "latest".
func ParseNormalized(s string) (Reference, error) {
	if isHexIdentifier(s) {
		return Reference{}, invalid(s, "a 64-character hexadecimal string is an image ID, not a repository name")
	}
	name, tag, dgst, err := splitObject(s)
	if err != nil {
		return Reference{}, err
	}
	domain, path := splitDomain(name)
	if domain == legacyDefaultDomain {
		domain = DefaultDomain
	}
	if domain == DefaultDomain && !strings.Contains(path, "/") {
		path = officialRepoPrefix + path
	}
	if tag == "" && dgst == "" {
		tag = DefaultTag
	}
	return build(s, domain, path, tag, dgst)
}

// build validates the parts and assembles the Reference.
func build(s, domain, path, tag string, dgst digest.Digest) (Reference, error) {
	if err := validateDomain(s, domain); err != nil {
		return Reference{}, err
	}
	if err := validatePath(s, path); err != nil {
		return Reference{}, err
	}
	if n := len(domain) + 1 + len(path); n > maxNameLength {
		return Reference{}, invalid(s, "name is %d characters long, the limit is %d", n, maxNameLength)
	}
	return Reference{Domain: domain, Path: path, Tag: tag, Digest: dgst}, nil
}

// splitObject separates "name[:tag][@digest]" and validates tag and digest.
func splitObject(s string) (name, tag string, dgst digest.Digest, err error) {
	if s == "" {
		return "", "", "", fmt.Errorf("invalid reference: empty: %w", errdefs.ErrInvalidArgument)
	}
	name = s
	if at := strings.IndexByte(name, '@'); at >= 0 {
		d, perr := digest.Parse(name[at+1:])
		if perr != nil {
			return "", "", "", invalid(s, "digest %q: %v", name[at+1:], perr)
		}
		name, dgst = name[:at], d
	}
	// A colon after the last slash starts the tag; earlier colons belong to
	// the domain's port.
	if colon := strings.LastIndexByte(name, ':'); colon > strings.LastIndexByte(name, '/') {
		name, tag = name[:colon], name[colon+1:]
		if err := validateTag(s, tag); err != nil {
			return "", "", "", err
		}
	}
	if name == "" {
		return "", "", "", invalid(s, "repository name is empty")
	}
	return name, tag, dgst, nil
}

// splitDomain applies Docker's rule for telling a domain from a path
// component: it has a dot or colon, is "localhost", or has uppercase letters
// (which a path component cannot have).
func splitDomain(name string) (domain, path string) {
	first, rest, ok := strings.Cut(name, "/")
	if !ok || !looksLikeDomain(first) {
		return DefaultDomain, name
	}
	return first, rest
}

func looksLikeDomain(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost" || strings.ToLower(s) != s
}

// String returns the full form: domain/path[:tag][@digest].
func (r Reference) String() string {
	return r.Name() + r.suffix()
}

// Name returns domain/path, without tag or digest.
func (r Reference) Name() string {
	return r.Domain + "/" + r.Path
}

// Familiar returns the short form Docker prints: "busybox:latest",
// "user/app:1", "localhost:5000/x@sha256:…".
func (r Reference) Familiar() string {
	return r.FamiliarName() + r.suffix()
}

// FamiliarName returns Name without the docker.io domain and, for official
// images, without "library/".
func (r Reference) FamiliarName() string {
	if r.Domain != DefaultDomain {
		return r.Name()
	}
	if rest, ok := strings.CutPrefix(r.Path, officialRepoPrefix); ok && !strings.Contains(rest, "/") {
		return rest
	}
	return r.Path
}

// Object returns what to ask the registry for: the digest when there is
// one, else the tag; empty when neither is set.
func (r Reference) Object() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

// WithDefaultTag returns r with tag "latest" when it has neither tag nor
// digest.
func (r Reference) WithDefaultTag() Reference {
	if r.Tag == "" && r.Digest == "" {
		r.Tag = DefaultTag
	}
	return r
}

func (r Reference) suffix() string {
	var b strings.Builder
	if r.Tag != "" {
		b.WriteString(":" + r.Tag)
	}
	if r.Digest != "" {
		b.WriteString("@" + r.Digest.String())
	}
	return b.String()
}

func invalid(s, format string, args ...any) error {
	return fmt.Errorf("invalid reference %q: %s: %w", s, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}
