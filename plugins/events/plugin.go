// Package events registers the event exchange.
package events

import (
	"github.com/berthd/berth/core/events"
	"github.com/berthd/berth/plugins"
)

func init() {
	plugins.Register(&plugins.Registration{
		Type: plugins.EventPlugin,
		ID:   "exchange",
		InitFn: func(ic *plugins.InitContext) (any, error) {
			return events.NewExchange(), nil
		},
	})
}
