package containerd

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	// The daemon's plugins (CRI, snapshotters, runtimes).
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
)

// Main runs the containerd daemon; distro re-executes itself under the name
// containerd to get here.
func Main(args []string) int {
	app := command.App()
	if err := app.Run(context.Background(), append([]string{"containerd"}, args...)); err != nil {
		fmt.Fprintf(os.Stderr, "containerd: %v\n", err)
		return 1
	}
	return 0
}
