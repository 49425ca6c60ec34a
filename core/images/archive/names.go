package archive

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthd/berth/core/images"
	"github.com/berthd/berth/core/reference"
)

// normalizeName returns the full form of an image name the archive gives
// ("busybox:latest" → "docker.io/library/busybox:latest").
func normalizeName(name, source string) (string, error) {
	ref, err := reference.ParseNormalized(name)
	if err != nil {
		return "", badArchive("%s names image %q: %v", source, name, err)
	}
	return ref.String(), nil
}

// normalizeBase checks a base name (a repository, without tag or digest)
// given by the caller and returns its full form.
func normalizeBase(base, option string) (string, error) {
	if base == "" {
		return "", nil
	}
	last := base[strings.LastIndex(base, "/")+1:]
	if strings.Contains(base, "@") || strings.Contains(last, ":") {
		return "", fmt.Errorf("%s %q must be a repository without tag or digest: %w", option, base, errdefs.ErrInvalidArgument)
	}
	ref, err := reference.ParseNormalized(base)
	if err != nil {
		return "", fmt.Errorf("%s: %w", option, err)
	}
	return ref.Name(), nil
}

// ociNames returns the name an index.json entry gives its image:
// containerd's full-name annotation when present; otherwise the OCI
// ref.name, which is either a tag (put after the base name, or ignored
// without one) or a full reference (ignored when a base name is set and
// the reference is not in that repository, as ctr does).
func ociNames(desc ocispec.Descriptor, base string) ([]string, error) {
	source := fmt.Sprintf("index.json entry %s", desc.Digest)
	if name := desc.Annotations[images.AnnotationImageName]; name != "" {
		n, err := normalizeName(name, source)
		if err != nil {
			return nil, err
		}
		return []string{n}, nil
	}
	ref := desc.Annotations[ocispec.AnnotationRefName]
	if ref == "" {
		return nil, nil
	}
	if !strings.ContainsAny(ref, "/:@") {
		if base == "" {
			return nil, nil
		}
		n, err := normalizeName(base+":"+ref, source)
		if err != nil {
			return nil, err
		}
		return []string{n}, nil
	}
	n, err := normalizeName(ref, source)
	if err != nil {
		return nil, err
	}
	if base != "" && !inRepository(n, base) {
		return nil, nil
	}
	return []string{n}, nil
}

// inRepository reports whether the full name n belongs to repository base.
func inRepository(n, base string) bool {
	rest, ok := strings.CutPrefix(n, base)
	return ok && (rest == "" || rest[0] == ':' || rest[0] == '@')
}

// dockerNames normalises the RepoTags of a manifest.json entry.
func dockerNames(tags []string, entry int) ([]string, error) {
	var out []string
	for _, tag := range tags {
		n, err := normalizeName(tag, fmt.Sprintf("manifest.json entry %d", entry))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// digestName is "<base>@<digest>".
func digestName(base string, d digest.Digest) string {
	return base + "@" + d.String()
}

// ociRefName is the OCI ref.name for a full image name: its tag, or its
// digest when it has no tag.
func ociRefName(name string) string {
	ref, err := reference.ParseNormalized(name)
	if err != nil {
		return name
	}
	if ref.Tag != "" {
		return ref.Tag
	}
	return ref.Digest.String()
}

// dockerRepoTag is the familiar "repo:tag" Docker puts in RepoTags; ""
// for names without a tag, which Docker cannot name.
func dockerRepoTag(name string) string {
	ref, err := reference.ParseNormalized(name)
	if err != nil || ref.Tag == "" {
		return ""
	}
	return ref.FamiliarName() + ":" + ref.Tag
}
