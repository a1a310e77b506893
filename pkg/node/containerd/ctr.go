package containerd

import (
	"context"
	"fmt"
	"os"

	ctrapp "github.com/containerd/containerd/v2/cmd/ctr/app"

	"distro/pkg/datadir"
)

// CtrMain runs the upstream ctr against distro's containerd and the k8s.io
// namespace, unless CONTAINERD_ADDRESS / CONTAINERD_NAMESPACE say otherwise.
func CtrMain(args []string) int {
	if os.Getenv("CONTAINERD_ADDRESS") == "" {
		os.Setenv("CONTAINERD_ADDRESS", datadir.NewAgent("").Socket)
	}
	if os.Getenv("CONTAINERD_NAMESPACE") == "" {
		os.Setenv("CONTAINERD_NAMESPACE", Namespace)
	}
	if err := ctrapp.New().Run(context.Background(), append([]string{"ctr"}, args...)); err != nil {
		fmt.Fprintln(os.Stderr, "ctr:", err)
		return 1
	}
	return 0
}
