// Package version holds distro's build information, set by the Makefile
// through -ldflags.
package version

import (
	"fmt"
	"runtime"

	kversion "k8s.io/component-base/version"
)

var (
	// Version is distro's version, e.g. v0.1.0.
	Version = "dev"
	// GitCommit is the commit distro was built from.
	GitCommit = "unknown"
)

// String is what `distro --version` prints.
func String() string {
	return fmt.Sprintf("distro version %s (%s)\nkubernetes %s\ngo %s %s/%s",
		Version, GitCommit, kversion.Get().GitVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
