// Package version reports the build's version, commit and Go version. The
// Makefile sets Version and Commit with -ldflags -X.
package version

import (
	"fmt"
	"io"
	"runtime"
)

// Version is the release this binary was built from ("dev" for local builds).
var Version = "dev"

// Commit is the git commit this binary was built from ("unknown" when not set).
var Commit = "unknown"

// String is the one-line description printed by `svcguard version` and logged at start.
func String() string {
	return fmt.Sprintf("svcguard %s (commit %s, %s %s/%s)", Version, Commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Print writes String and a newline to w.
func Print(w io.Writer) {
	fmt.Fprintln(w, String())
}
