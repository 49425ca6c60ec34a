package filters

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// object is a test subject: top-level fields plus a labels map, reached as
// "labels.<key>" with the rest of the path joined by dots.
type object struct {
	name   string
	kind   string
	labels map[string]string
}

func (o object) Field(fp []string) (string, bool) {
	switch fp[0] {
	case "name":
		return o.name, o.name != ""
	case "kind":
		return o.kind, o.kind != ""
	case "labels":
		if len(fp) < 2 {
			return "", false
		}
		v, ok := o.labels[strings.Join(fp[1:], ".")]
		return v, ok
	}
	return "", false
}

func TestParseStructure(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []selector
	}{
		{"name", []selector{{fieldpath: []string{"name"}, op: opPresent}}},
		{"name==foo", []selector{{fieldpath: []string{"name"}, op: opEqual, value: "foo"}}},
		{"name!=foo", []selector{{fieldpath: []string{"name"}, op: opNotEqual, value: "foo"}}},
		{"name~=fo+", []selector{{fieldpath: []string{"name"}, op: opMatches, value: "fo+"}}},
		{"  name  ==  foo  ", []selector{{fieldpath: []string{"name"}, op: opEqual, value: "foo"}}},
		{"labels.foo.bar==x", []selector{{fieldpath: []string{"labels", "foo", "bar"}, op: opEqual, value: "x"}}},
		{`labels."com.example.key"==value`, []selector{{fieldpath: []string{"labels", "com.example.key"}, op: opEqual, value: "value"}}},
		{`labels."a\"b"`, []selector{{fieldpath: []string{"labels", `a"b`}, op: opPresent}}},
		{`name=="with space, and comma"`, []selector{{fieldpath: []string{"name"}, op: opEqual, value: "with space, and comma"}}},
		{`name=="tab\there\u00e9\x41"`, []selector{{fieldpath: []string{"name"}, op: opEqual, value: "tab\thereéA"}}},
		{"name==a.b/c:d=e", []selector{{fieldpath: []string{"name"}, op: opEqual, value: "a.b/c:d=e"}}},
		{"name==/usr/bin", []selector{{fieldpath: []string{"name"}, op: opEqual, value: "/usr/bin"}}},
		{"name==héllo", []selector{{fieldpath: []string{"name"}, op: opEqual, value: "héllo"}}},
		{`name~=/^\d+\/x$/`, []selector{{fieldpath: []string{"name"}, op: opMatches, value: `^\d+/x$`}}},
		{`name~=|a\|b\\|`, []selector{{fieldpath: []string{"name"}, op: opMatches, value: `a|b\\`}}},
		{`name~="^a\\.b$"`, []selector{{fieldpath: []string{"name"}, op: opMatches, value: `^a\.b$`}}},
		{"name==foo,kind", []selector{
			{fieldpath: []string{"name"}, op: opEqual, value: "foo"},
			{fieldpath: []string{"kind"}, op: opPresent},
		}},
		{"name==foo , kind!=bar,labels.x~=y", []selector{
			{fieldpath: []string{"name"}, op: opEqual, value: "foo"},
			{fieldpath: []string{"kind"}, op: opNotEqual, value: "bar"},
			{fieldpath: []string{"labels", "x"}, op: opMatches, value: "y"},
		}},
		{"_1a_", []selector{{fieldpath: []string{"_1a_"}, op: opPresent}}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			f, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			all, ok := f.(All)
			if !ok {
				t.Fatalf("Parse(%q) = %T, want All", tc.in, f)
			}
			var got []selector
			for _, s := range all {
				sel := s.(selector)
				if sel.op == opMatches && sel.re == nil {
					t.Errorf("regexp for %q not compiled", sel.value)
				}
				sel.re = nil
				got = append(got, sel)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) =\n %+v\nwant\n %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		in    string
		pos   string // "position N"
		token string // what the error must quote
	}{
		{"name=", "position 4", `"="`},
		{"name===x", "position 4", `"===x"`},
		{"name=~x", "position 4", `"=~x"`},
		{"name==", "position 6", "end of input"},
		{"name==,kind", "position 6", `","`},
		{"name==foo,", "position 10", "end of input"},
		{",name", "position 0", `","`},
		{"labels.", "position 7", "end of input"},
		{"labels..x", "position 7", `"."`},
		{"labels.-x", "position 7", `"-x"`},
		{"na-me==x", "position 2", `"-me==x"`},
		{"name==a b", "position 8", `"b"`},
		{`name=="abc`, "position 6", `"\"abc"`},
		{"name==\"ab\ncd\"", "position 6", `"\"ab"`},
		{`name=="a\qb"`, "position 6", `"\"a\\qb\""`},
		{`labels."x`, "position 7", `"\"x"`},
		{`name~=/abc`, "position 6", `"/abc"`},
		{`name~=(`, "position 6", `"("`},
		{`name~=/a(/`, "position 6", `"/a(/"`},
		{"name==a\x00b", "position 7", `"\x00b"`},
		{"name==a\xffb", "position 7", `"\xffb"`},
		{`name==foo"bar" x`, "position 15", `"x"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want error", tc.in)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v is not ErrInvalidArgument", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.pos) || !strings.Contains(msg, "found "+tc.token) {
				t.Errorf("error %q does not name %s and token %s", msg, tc.pos, tc.token)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	objs := map[string]object{
		"a": {name: "alpha", kind: "image", labels: map[string]string{"env": "prod", "com.example.key": "v1", "empty": ""}},
		"b": {name: "beta", kind: "container", labels: map[string]string{"env": "dev"}},
		"c": {name: "gamma"},
	}
	for _, tc := range []struct {
		filters []string
		want    string // the keys of objs that match, sorted
	}{
		{nil, "abc"},
		{[]string{""}, "abc"},
		{[]string{"   "}, "abc"},
		{[]string{"kind"}, "ab"},
		{[]string{"name==alpha"}, "a"},
		{[]string{"name!=alpha"}, "bc"},
		{[]string{"kind!=image"}, "bc"}, // absent counts as ""
		{[]string{"kind==image,name==beta"}, ""},
		{[]string{"kind==image", "name==beta"}, "ab"},
		{[]string{"name~=^(alpha|gamma)$"}, "ac"},
		{[]string{"name~=/^.e/"}, "b"},
		{[]string{"kind~=^$"}, "c"}, // regexp sees "" for absent
		{[]string{`labels."com.example.key"==v1`}, "a"},
		{[]string{`labels.com.example.key==v1`}, "a"},
		{[]string{"labels.env"}, "ab"},
		{[]string{"labels.empty"}, "a"},
		{[]string{`labels.empty==""`}, "a"},
		{[]string{"labels.env==prod,labels.env==dev"}, ""},
		{[]string{"labels.env==prod", "labels.env==dev"}, "ab"},
		{[]string{"labels.env!=prod,kind"}, "b"},
		{[]string{"unknown"}, ""},
		{[]string{"unknown!=x"}, "abc"},
	} {
		f, err := ParseAll(tc.filters...)
		if err != nil {
			t.Fatalf("ParseAll(%q): %v", tc.filters, err)
		}
		var got string
		for _, k := range []string{"a", "b", "c"} {
			if f.Match(objs[k]) {
				got += k
			}
		}
		if got != tc.want {
			t.Errorf("ParseAll(%q) matched %q, want %q", tc.filters, got, tc.want)
		}
	}
}

func TestParseAllNamesBadFilter(t *testing.T) {
	_, err := ParseAll("name==a", "name=b")
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("want ErrInvalidArgument, got %v", err)
	}
	if !strings.Contains(err.Error(), "filter 1") {
		t.Errorf("error %q does not name the second filter", err)
	}
}

func TestCombinators(t *testing.T) {
	yes := FilterFunc(func(Adaptor) bool { return true })
	no := FilterFunc(func(Adaptor) bool { return false })
	a := AdapterFunc(func([]string) (string, bool) { return "", false })
	for _, tc := range []struct {
		f    Filter
		want bool
	}{
		{Always, true},
		{Any{}, false},
		{Any{no, yes}, true},
		{Any{no, no}, false},
		{All{}, true},
		{All{yes, yes}, true},
		{All{yes, no}, false},
	} {
		if got := tc.f.Match(a); got != tc.want {
			t.Errorf("%#v.Match = %v, want %v", tc.f, got, tc.want)
		}
	}
}

// FuzzParse checks that no input panics the parser and that every failure
// is an ErrInvalidArgument.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"a==b", `labels."x.y"~=/z\/w/`, "a,b!=c", `a=="\u00e9"`, "a~=|x|", ",", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := Parse(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Parse(%q) error %v is not ErrInvalidArgument", s, err)
			}
			return
		}
		flt.Match(AdapterFunc(func([]string) (string, bool) { return "v", true }))
	})
}
