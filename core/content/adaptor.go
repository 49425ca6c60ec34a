package content

import (
	"strconv"
	"strings"

	"github.com/berthd/berth/core/filters"
)

// AdaptInfo exposes a blob's Info to filters. Fields: "digest", "size"
// (decimal bytes) and "labels.<key>" (the rest of the path joined by dots,
// so labels."a.b" and labels.a.b name the same key).
func AdaptInfo(info Info) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "digest":
			return info.Digest.String(), true
		case "size":
			return strconv.FormatInt(info.Size, 10), true
		case "labels":
			return lookupLabel(fieldpath[1:], info.Labels)
		}
		return "", false
	})
}

// AdaptStatus exposes an ingest's Status to filters. Fields: "ref" and
// "expected" (present only when the ingest was opened with a digest).
func AdaptStatus(st Status) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "ref":
			return st.Ref, true
		case "expected":
			return st.Expected.String(), st.Expected != ""
		}
		return "", false
	})
}

func lookupLabel(fieldpath []string, labels map[string]string) (string, bool) {
	if len(fieldpath) == 0 || len(labels) == 0 {
		return "", false
	}
	v, ok := labels[strings.Join(fieldpath, ".")]
	return v, ok
}
