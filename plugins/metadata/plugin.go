// Package metadata registers the bbolt metadata plugin.
package metadata

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/plugins"
)

// ID is the plugin id, containerd's name for the same plugin.
const ID = "bolt"

func init() {
	plugins.Register(&plugins.Registration{
		Type:   plugins.MetadataPlugin,
		ID:     ID,
		InitFn: initDB,
	})
}

func initDB(ic *plugins.InitContext) (any, error) {
	path := filepath.Join(ic.Root, "meta.db")
	db, err := metadata.Open(path)
	if err != nil {
		if errors.Is(err, metadata.ErrInUse) {
			return nil, fmt.Errorf("root %s is in use by another berthd", ic.Properties[plugins.PropertyRootDir])
		}
		return nil, err
	}
	ic.Meta.Exports["path"] = path
	return db, nil
}
