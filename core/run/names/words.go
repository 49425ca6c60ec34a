package names

// The words of generated names: plain English adjectives and nouns from
// the sea and the shore, so a name reads like "calm_harbor".
var adjectives = []string{
	"agile", "amber", "ancient", "azure", "bold", "brave", "breezy", "bright",
	"brisk", "calm", "candid", "clever", "cosmic", "crisp", "curious", "daring",
	"deep", "eager", "early", "easy", "elegant", "epic", "fair", "fancy",
	"fearless", "festive", "fluent", "fond", "frosty", "gentle", "gifted", "glad",
	"golden", "graceful", "grand", "happy", "hardy", "hidden", "honest", "humble",
	"icy", "jolly", "keen", "kind", "lively", "loyal", "lucid", "lucky",
	"mellow", "merry", "mighty", "misty", "modest", "nimble", "noble", "patient",
	"peaceful", "placid", "plucky", "polite", "proud", "quick", "quiet", "rapid",
	"rosy", "royal", "rustic", "serene", "sharp", "shiny", "silent", "silver",
	"sleepy", "smooth", "snowy", "solid", "sparkling", "spry", "stately", "steady",
	"stellar", "stoic", "sturdy", "sunny", "swift", "tender", "tidy", "tranquil",
	"trusty", "upbeat", "valiant", "vast", "vivid", "warm", "wild", "wise",
	"witty", "zealous", "zesty",
}

var nouns = []string{
	"albatross", "anchor", "atoll", "bay", "beacon", "berth", "bollard", "bow",
	"breaker", "breeze", "buoy", "cabin", "canal", "cape", "cargo", "channel",
	"cliff", "compass", "coral", "cormorant", "cove", "crane", "current", "delta",
	"dinghy", "dock", "dolphin", "dune", "estuary", "ferry", "fjord", "flotilla",
	"galley", "gannet", "gull", "gulf", "harbor", "hawser", "heron", "horizon",
	"hull", "inlet", "island", "jetty", "keel", "kelp", "ketch", "lagoon",
	"lantern", "launch", "lighthouse", "marina", "mast", "mooring", "narwhal", "oar",
	"octopus", "orca", "osprey", "otter", "pelican", "pier", "pilot", "porpoise",
	"puffin", "quay", "raft", "reef", "rigging", "rudder", "sail", "sandbar",
	"schooner", "seal", "shell", "shoal", "shore", "skiff", "sloop", "sound",
	"starfish", "stern", "strait", "surf", "swell", "tern", "tide", "trawler",
	"tugboat", "turtle", "walrus", "wave", "whale", "wharf", "yacht", "yawl",
}
