// Package version holds berth's version, set at build time by the Makefile.
package version

var (
	// Version is the release, e.g. "v0.1.0", or a git describe string.
	Version = "v0.1.0-dev"
	// Revision is the git commit the binary was built from.
	Revision = ""
	// Package is the module path, reported like containerd reports its own.
	Package = "github.com/berthd/berth"
)
