// Package filters implements containerd's filter language, used by list and
// walk calls to select objects by field.
//
// A filter string is a comma-separated list of selectors that must all match
// (AND); several filter strings passed to ParseAll match when any of them
// matches (OR). A selector is a field path followed by an optional operator
// and value:
//
//	labels."com.example.key"==value   equal (field present and equal)
//	name!=foo                         not equal (an absent field counts as "")
//	name~=^foo.*$                     Go regular expression (absent field = "")
//	labels.foo                        presence
//
// Field paths are dot-separated; a component is either a run of
// [A-Za-z0-9_] or a double-quoted Go string. Values are either a run of
// characters other than ',' and whitespace, or a double-quoted Go string.
// For ~= the value may also be quoted with /.../ or |...|; inside those
// only the quote character itself is unescaped (\/ or \|) and every other
// backslash sequence reaches the regular expression untouched, so
// /^\d+$/ means what it says.
//
// The objects being filtered are reached through an Adaptor, which maps a
// field path to a value.
package filters

import "regexp"

// Adaptor gives a filter access to the fields of one object.
type Adaptor interface {
	// Field returns the value at fieldpath and whether it is present.
	Field(fieldpath []string) (value string, present bool)
}

// AdapterFunc turns a function into an Adaptor.
type AdapterFunc func(fieldpath []string) (string, bool)

// Field calls fn.
func (fn AdapterFunc) Field(fieldpath []string) (string, bool) {
	return fn(fieldpath)
}

// Filter decides whether an object, seen through an Adaptor, is selected.
type Filter interface {
	Match(adaptor Adaptor) bool
}

// FilterFunc turns a function into a Filter.
type FilterFunc func(Adaptor) bool

// Match calls fn.
func (fn FilterFunc) Match(adaptor Adaptor) bool {
	return fn(adaptor)
}

// Always matches everything; it is what an empty filter parses to.
var Always FilterFunc = func(Adaptor) bool { return true }

// Any matches when at least one of its filters matches; an empty Any
// matches nothing.
type Any []Filter

// Match reports whether any filter matches.
func (fs Any) Match(adaptor Adaptor) bool {
	for _, f := range fs {
		if f.Match(adaptor) {
			return true
		}
	}
	return false
}

// All matches when every one of its filters matches; an empty All matches
// everything.
type All []Filter

// Match reports whether all filters match.
func (fs All) Match(adaptor Adaptor) bool {
	for _, f := range fs {
		if !f.Match(adaptor) {
			return false
		}
	}
	return true
}

type operator int

const (
	opPresent operator = iota
	opEqual
	opNotEqual
	opMatches
)

// selector is one fieldpath-operator-value term.
type selector struct {
	fieldpath []string
	op        operator
	value     string
	re        *regexp.Regexp // compiled at parse time for opMatches
}

// Match follows containerd: == needs the field present, while != and ~=
// compare an absent field as the empty string.
func (s selector) Match(adaptor Adaptor) bool {
	value, present := adaptor.Field(s.fieldpath)
	switch s.op {
	case opPresent:
		return present
	case opEqual:
		return present && value == s.value
	case opNotEqual:
		return value != s.value
	case opMatches:
		return s.re.MatchString(value)
	}
	return false
}
