package filters

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/errdefs"
)

// Parse parses one filter string: selectors joined by ',' that must all
// match. An empty (or all-whitespace) string matches everything. Errors wrap
// errdefs.ErrInvalidArgument and name the byte position and the offending
// token.
func Parse(s string) (Filter, error) {
	if strings.TrimSpace(s) == "" {
		return Always, nil
	}
	p := parser{in: s}
	return p.selectors()
}

// ParseAll parses several filter strings into a filter that matches when
// any of them matches. No strings at all matches everything.
func ParseAll(ss ...string) (Filter, error) {
	if len(ss) == 0 {
		return Always, nil
	}
	fs := make(Any, 0, len(ss))
	for i, s := range ss {
		f, err := Parse(s)
		if err != nil {
			if len(ss) > 1 {
				return nil, fmt.Errorf("filter %d: %w", i, err)
			}
			return nil, err
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// parser is a recursive-descent parser working directly on the input bytes;
// pos is the byte offset of the next unread character.
type parser struct {
	in  string
	pos int
}

// errorf builds a parse error at pos naming what was found there.
func (p *parser) errorf(pos int, format string, args ...any) error {
	return fmt.Errorf("filters: parse error at position %d in %q: %s, found %s: %w",
		pos, p.in, fmt.Sprintf(format, args...), p.tokenAt(pos), errdefs.ErrInvalidArgument)
}

// tokenAt describes the input at pos for error messages: the run of
// characters up to the next separator, or "end of input".
func (p *parser) tokenAt(pos int) string {
	if pos >= len(p.in) {
		return "end of input"
	}
	end := pos + 1
	for end < len(p.in) && !strings.ContainsRune(",.", rune(p.in[pos])) && !strings.ContainsRune(",. \t\n", rune(p.in[end])) && end-pos < 32 {
		end++
	}
	return strconv.Quote(p.in[pos:end])
}

func (p *parser) eof() bool { return p.pos >= len(p.in) }

func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.in[p.pos]
}

func (p *parser) skipSpace() {
	for !p.eof() {
		r, n := utf8.DecodeRuneInString(p.in[p.pos:])
		if !unicode.IsSpace(r) {
			return
		}
		p.pos += n
	}
}

func (p *parser) selectors() (Filter, error) {
	var all All
	for {
		s, err := p.selector()
		if err != nil {
			return nil, err
		}
		all = append(all, s)
		p.skipSpace()
		if p.eof() {
			return all, nil
		}
		if p.peek() != ',' {
			return nil, p.errorf(p.pos, "expected ',' or end of input")
		}
		p.pos++
	}
}

func (p *parser) selector() (selector, error) {
	p.skipSpace()
	fieldpath, err := p.fieldpath()
	if err != nil {
		return selector{}, err
	}
	p.skipSpace()
	if p.eof() || p.peek() == ',' {
		return selector{fieldpath: fieldpath, op: opPresent}, nil
	}
	op, err := p.operator()
	if err != nil {
		return selector{}, err
	}
	p.skipSpace()
	valuePos := p.pos
	value, err := p.value(op)
	if err != nil {
		return selector{}, err
	}
	s := selector{fieldpath: fieldpath, op: op, value: value}
	if op == opMatches {
		// Compiling here, unlike containerd which compiles on first match,
		// turns a bad pattern into a parse error instead of a silent miss.
		s.re, err = regexp.Compile(value)
		if err != nil {
			return selector{}, p.errorf(valuePos, "invalid regular expression (%v)", err)
		}
	}
	return s, nil
}

func (p *parser) fieldpath() ([]string, error) {
	var path []string
	for {
		f, err := p.field()
		if err != nil {
			return nil, err
		}
		path = append(path, f)
		if p.peek() != '.' {
			return path, nil
		}
		p.pos++
	}
}

func isFieldByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (p *parser) field() (string, error) {
	if p.peek() == '"' {
		return p.quoted()
	}
	start := p.pos
	for !p.eof() && isFieldByte(p.in[p.pos]) {
		p.pos++
	}
	if start == p.pos {
		return "", p.errorf(start, "expected field name or quoted string")
	}
	return p.in[start:p.pos], nil
}

func (p *parser) operator() (operator, error) {
	start := p.pos
	for !p.eof() && strings.IndexByte("=!~", p.in[p.pos]) >= 0 {
		p.pos++
	}
	switch p.in[start:p.pos] {
	case "==":
		return opEqual, nil
	case "!=":
		return opNotEqual, nil
	case "~=":
		return opMatches, nil
	}
	return 0, p.errorf(start, "expected operator ==, != or ~=")
}

func (p *parser) value(op operator) (string, error) {
	switch c := p.peek(); {
	case p.eof() || c == ',':
		return "", p.errorf(p.pos, "expected value")
	case c == '"':
		return p.quoted()
	case op == opMatches && (c == '/' || c == '|'):
		return p.altQuoted()
	}
	start := p.pos
	for !p.eof() {
		r, n := utf8.DecodeRuneInString(p.in[p.pos:])
		if r == ',' || unicode.IsSpace(r) {
			break
		}
		if r == utf8.RuneError && n == 1 || !unicode.IsGraphic(r) {
			return "", p.errorf(p.pos, "illegal character in value")
		}
		p.pos += n
	}
	return p.in[start:p.pos], nil
}

// quoted reads a double-quoted Go string literal starting at pos.
func (p *parser) quoted() (string, error) {
	start := p.pos
	end, err := p.closingQuote('"')
	if err != nil {
		return "", err
	}
	s, uerr := strconv.Unquote(p.in[start : end+1])
	if uerr != nil {
		return "", p.errorf(start, "invalid quoted string (bad escape sequence)")
	}
	p.pos = end + 1
	return s, nil
}

// altQuoted reads a /.../ or |...| regular expression. Only the escaped
// quote character is unescaped; other backslashes belong to the pattern.
func (p *parser) altQuoted() (string, error) {
	q := p.in[p.pos]
	start := p.pos
	end, err := p.closingQuote(q)
	if err != nil {
		return "", err
	}
	p.pos = end + 1
	var b strings.Builder
	for i := start + 1; i < end; i++ {
		if p.in[i] == '\\' && p.in[i+1] == q {
			i++
		} else if p.in[i] == '\\' {
			b.WriteByte('\\') // keep the pair whole so \\ is not split
			i++
		}
		b.WriteByte(p.in[i])
	}
	return b.String(), nil
}

// closingQuote finds the index of the quote ending the literal that opens
// at pos, skipping backslash-escaped characters.
func (p *parser) closingQuote(q byte) (int, error) {
	for i := p.pos + 1; i < len(p.in); i++ {
		switch p.in[i] {
		case '\\':
			i++
		case '\n':
			return 0, p.errorf(p.pos, "quoted string not terminated before newline")
		case q:
			return i, nil
		}
	}
	return 0, p.errorf(p.pos, "quoted string not terminated")
}
