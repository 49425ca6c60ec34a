package reference

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const testDigest = "sha256:4c2a8a3b9ee0d7a7d2b8b0c5d5f5a2b1c9e6f0e7d3c4b5a6978877665544332a"

func TestParseNormalized(t *testing.T) {
	cases := []struct {
		in, full, familiar string
	}{
		{"busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"},
		{"user/app:1", "docker.io/user/app:1", "user/app:1"},
		{"docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"},
		{"localhost/x", "localhost/x:latest", "localhost/x:latest"},
		{"localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"},
		{"127.0.0.1:5000/x@" + testDigest, "127.0.0.1:5000/x@" + testDigest, "127.0.0.1:5000/x@" + testDigest},
		{"busybox:1@" + testDigest, "docker.io/library/busybox:1@" + testDigest, "busybox:1@" + testDigest},
		{"[::1]:5000/a/b-c__d.e:v_1.0-x", "[::1]:5000/a/b-c__d.e:v_1.0-x", "[::1]:5000/a/b-c__d.e:v_1.0-x"},
		{"Registry.Example/ns/app", "Registry.Example/ns/app:latest", "Registry.Example/ns/app:latest"},
		{"quay.io/a/b/c:t", "quay.io/a/b/c:t", "quay.io/a/b/c:t"},
		{"a---b/c", "docker.io/a---b/c:latest", "a---b/c:latest"},
	}
	for _, tc := range cases {
		ref, err := ParseNormalized(tc.in)
		if err != nil {
			t.Errorf("ParseNormalized(%q): %v", tc.in, err)
			continue
		}
		if got := ref.String(); got != tc.full {
			t.Errorf("ParseNormalized(%q).String() = %q, want %q", tc.in, got, tc.full)
		}
		if got := ref.Familiar(); got != tc.familiar {
			t.Errorf("ParseNormalized(%q).Familiar() = %q, want %q", tc.in, got, tc.familiar)
		}
		// The full form parses strictly to the same reference.
		again, err := Parse(ref.String())
		if err != nil || again != ref {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", ref.String(), again, err, ref)
		}
	}
}

func TestParts(t *testing.T) {
	ref, err := ParseNormalized("127.0.0.1:5000/team/app:v2@" + testDigest)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Domain != "127.0.0.1:5000" || ref.Path != "team/app" || ref.Tag != "v2" || ref.Digest.String() != testDigest {
		t.Fatalf("parts = %+v", ref)
	}
	if ref.Name() != "127.0.0.1:5000/team/app" {
		t.Errorf("Name() = %q", ref.Name())
	}
	if ref.Object() != testDigest {
		t.Errorf("Object() = %q, want the digest", ref.Object())
	}
	tagOnly, _ := ParseNormalized("app:v3")
	if tagOnly.Object() != "v3" {
		t.Errorf("Object() = %q, want v3", tagOnly.Object())
	}
}

func TestParseStrict(t *testing.T) {
	ref, err := Parse("docker.io/library/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Tag != "" || ref.Object() != "" {
		t.Errorf("strict parse added a default: %+v", ref)
	}
	if got := ref.WithDefaultTag().String(); got != "docker.io/library/busybox:latest" {
		t.Errorf("WithDefaultTag() = %q", got)
	}
	for _, in := range []string{"busybox", "library/busybox:1", "user/app"} {
		if _, err := Parse(in); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "no registry domain") {
			t.Errorf("Parse(%q) = %v, want a missing-domain error", in, err)
		}
	}
}

func TestInvalid(t *testing.T) {
	cases := []struct{ in, part string }{
		{"", "empty"},
		{"Busybox", "must be lowercase"},
		{"docker.io/User/app", "must be lowercase"},
		{"app:bad tag", `tag "bad tag"`},
		{"app:.dot", `tag ".dot"`},
		{"app:" + strings.Repeat("t", 129), "tag is 129 characters"},
		{"app@sha256:abc", `digest "sha256:abc"`},
		{"app@md5:0123", `digest "md5:0123"`},
		{"a//b", "empty component"},
		{"a/-b", `path component "-b"`},
		{"a/b_", `path component "b_"`},
		{"a/b___c", `path component "b___c"`},
		{"exa_mple.com:5000/x", `"exa_mple" is not a valid host name part`},
		{"-bad.com/x", `"-bad" is not a valid host name part`},
		{"example.com:port/x", `port "port" is not a number`},
		{"[::1/x", "missing ']'"},
		{"[zz]:5000/x", "is not an IPv6 address"},
		{strings.Repeat("a", 64), "image ID"},
		{"example.com/" + strings.Repeat("a", 250), "limit is 255"},
		{":tag", "repository name is empty"},
	}
	for _, tc := range cases {
		_, err := ParseNormalized(tc.in)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseNormalized(%q) = %v, want ErrInvalidArgument", tc.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.part) {
			t.Errorf("ParseNormalized(%q) error %q does not name %q", tc.in, err, tc.part)
		}
	}
}

func BenchmarkParseNormalized(b *testing.B) {
	for b.Loop() {
		if _, err := ParseNormalized("127.0.0.1:5000/team/app:v2@" + testDigest); err != nil {
			b.Fatal(err)
		}
	}
}
