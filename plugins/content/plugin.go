// Package content registers the local content store: blobs under the
// plugin's root, by algorithm and digest.
package content

import (
	"github.com/berthd/berth/core/content/local"
	"github.com/berthd/berth/plugins"
)

func init() {
	plugins.Register(&plugins.Registration{
		Type: plugins.ContentPlugin,
		ID:   "content",
		InitFn: func(ic *plugins.InitContext) (any, error) {
			ic.Meta.Exports["root"] = ic.Root
			return local.NewStore(ic.Root)
		},
	})
}
