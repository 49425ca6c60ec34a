package testimages

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerLegacyLayer is the per-layer json of the legacy `docker save` format.
type dockerLegacyLayer struct {
	ID           string               `json:"id"`
	Parent       string               `json:"parent,omitempty"`
	Created      time.Time            `json:"created"`
	OS           string               `json:"os,omitempty"`
	Architecture string               `json:"architecture,omitempty"`
	Config       *ocispec.ImageConfig `json:"config,omitempty"`
}

// WriteDockerArchive writes images in the classic `docker save` format:
// manifest.json (Config "<hex>.json", RepoTags, Layers "<id>/layer.tar"),
// the repositories file, and per layer a directory <id>/ with VERSION,
// json and an uncompressed layer.tar. An index contributes its host-platform
// manifest. Every image needs a name.
func WriteDockerArchive(w io.Writer, images ...*Image) error {
	if err := checkNamed(images); err != nil {
		return err
	}
	files := map[string][]byte{}
	repositories := map[string]map[string]string{}
	var manifest []dockerManifestEntry
	for _, img := range images {
		entry, topID, err := addDockerImage(files, img)
		if err != nil {
			return fmt.Errorf("docker archive of %s: %w", img.Name, err)
		}
		manifest = append(manifest, entry)
		if tags := repoTags(img.Name); len(tags) > 0 && topID != "" {
			repo, tag := splitReference(tags[0])
			if repositories[repo] == nil {
				repositories[repo] = map[string]string{}
			}
			repositories[repo][tag] = topID
		}
	}
	for name, v := range map[string]any{dockerManifestFile: manifest, "repositories": repositories} {
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", name, err)
		}
		files[name] = data
	}
	list := make([]layoutFile, 0, len(files))
	for _, name := range slices.Sorted(maps.Keys(files)) {
		list = append(list, layoutFile{name, files[name]})
	}
	return writeTar(w, list)
}

// addDockerImage adds the config and layers of img's host manifest to files
// and returns its manifest.json entry and top layer ID.
func addDockerImage(files map[string][]byte, img *Image) (dockerManifestEntry, string, error) {
	r, err := img.Resolve("")
	if err != nil {
		return dockerManifestEntry{}, "", err
	}
	cfgDigest := r.Manifest.Config.Digest
	entry := dockerManifestEntry{Config: cfgDigest.Encoded() + ".json", RepoTags: repoTags(img.Name)}
	files[entry.Config] = img.Blobs[cfgDigest]
	if len(r.Config.RootFS.DiffIDs) != len(r.Manifest.Layers) {
		return dockerManifestEntry{}, "", fmt.Errorf("config has %d diff IDs for %d layers", len(r.Config.RootFS.DiffIDs), len(r.Manifest.Layers))
	}
	parent := ""
	for i, l := range r.Manifest.Layers {
		top := i == len(r.Manifest.Layers)-1
		// Like Docker's v1 IDs, an ID covers the layer's chain, and the top
		// one also the config it carries.
		seed := parent + " " + r.Config.RootFS.DiffIDs[i].String()
		if top {
			seed += " " + cfgDigest.String()
		}
		id := digest.FromString(seed).Encoded()
		entry.Layers = append(entry.Layers, id+"/layer.tar")
		if _, done := files[id+"/layer.tar"]; !done {
			if err := addLegacyLayer(files, id, parent, img.Blobs[l.Digest], r, top); err != nil {
				return dockerManifestEntry{}, "", fmt.Errorf("layer %d: %w", i, err)
			}
		}
		parent = id
	}
	return entry, parent, nil
}

func addLegacyLayer(files map[string][]byte, id, parent string, blob []byte, r Resolved, top bool) error {
	tarData, err := Decompress(blob)
	if err != nil {
		return err
	}
	legacy := dockerLegacyLayer{ID: id, Parent: parent, Created: Epoch}
	if top {
		legacy.OS, legacy.Architecture = r.Config.OS, r.Config.Architecture
		legacy.Config = &r.Config.Config
	}
	js, err := json.Marshal(legacy)
	if err != nil {
		return fmt.Errorf("encode legacy json: %w", err)
	}
	files[id+"/VERSION"] = []byte("1.0")
	files[id+"/json"] = js
	files[id+"/layer.tar"] = tarData
	return nil
}
