package reference

import (
	"strings"
)

// validateDomain checks host[:port] where host is a DNS-like name, an IPv4
// address or a bracketed IPv6 address.
func validateDomain(s, domain string) error {
	host, port := domain, ""
	if strings.HasPrefix(domain, "[") {
		end := strings.IndexByte(domain, ']')
		if end < 0 {
			return invalid(s, "domain %q: missing ']' after IPv6 address", domain)
		}
		host, port = domain[1:end], domain[end+1:]
		if !isIPv6Chars(host) {
			return invalid(s, "domain %q: %q is not an IPv6 address", domain, host)
		}
		if port != "" && port[0] != ':' {
			return invalid(s, "domain %q: unexpected %q after IPv6 address", domain, port)
		}
		port = strings.TrimPrefix(port, ":")
	} else if colon := strings.LastIndexByte(domain, ':'); colon >= 0 {
		host, port = domain[:colon], domain[colon+1:]
		if port == "" {
			return invalid(s, "domain %q: empty port", domain)
		}
	}
	if port != "" && !isDigits(port) {
		return invalid(s, "domain %q: port %q is not a number", domain, port)
	}
	if strings.HasPrefix(domain, "[") {
		return nil
	}
	for _, label := range strings.Split(host, ".") {
		if !isDomainLabel(label) {
			return invalid(s, "domain %q: %q is not a valid host name part", domain, label)
		}
	}
	return nil
}

func isDomainLabel(label string) bool {
	if label == "" {
		return false
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		switch {
		case isAlnum(c) || c >= 'A' && c <= 'Z':
		case c == '-' && i > 0 && i < len(label)-1:
		default:
			return false
		}
	}
	return true
}

func isIPv6Chars(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':') {
			return false
		}
	}
	return true
}

// validatePath checks the slash-separated repository path: each component
// is lowercase alphanumerics joined by ".", "_", "__" or runs of "-".
func validatePath(s, path string) error {
	if path == "" {
		return invalid(s, "repository path is empty")
	}
	for _, comp := range strings.Split(path, "/") {
		if comp == "" {
			return invalid(s, "repository path %q has an empty component", path)
		}
		if strings.ToLower(comp) != comp {
			return invalid(s, "repository name %q must be lowercase", path)
		}
		if !isPathComponent(comp) {
			return invalid(s, "path component %q: want lowercase letters and digits separated by '.', '_', '__' or '-'", comp)
		}
	}
	return nil
}

func isPathComponent(comp string) bool {
	if !isAlnum(comp[0]) || !isAlnum(comp[len(comp)-1]) {
		return false
	}
	for i := 0; i < len(comp); {
		if isAlnum(comp[i]) {
			i++
			continue
		}
		// A separator run: ".", "_", "__" or any number of "-".
		j := i
		for j < len(comp) && !isAlnum(comp[j]) {
			j++
		}
		if !isSeparator(comp[i:j]) {
			return false
		}
		i = j
	}
	return true
}

func isSeparator(sep string) bool {
	switch sep {
	case ".", "_", "__":
		return true
	}
	return strings.Trim(sep, "-") == ""
}

// validateTag checks [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func validateTag(s, tag string) error {
	if tag == "" {
		return invalid(s, "tag is empty")
	}
	if len(tag) > maxTagLength {
		return invalid(s, "tag is %d characters long, the limit is %d", len(tag), maxTagLength)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		word := isAlnum(c) || c >= 'A' && c <= 'Z' || c == '_'
		if !word && (i == 0 || c != '.' && c != '-') {
			return invalid(s, "tag %q: character %q not allowed at position %d", tag, c, i)
		}
	}
	return nil
}

// isHexIdentifier reports a bare 64-character hex string, which Docker
// treats as an image ID and refuses as a repository name.
func isHexIdentifier(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
