package cli

import (
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

// DefaultKubeconfig is where `distro server` writes the admin kubeconfig.
const DefaultKubeconfig = "/etc/distro/distro.yaml"

func newKubectlCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl",
		Short:              "Run kubectl against this cluster",
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			os.Exit(runKubectl(args))
			return nil
		},
	}
}

// runKubectl runs the upstream kubectl. Without KUBECONFIG it uses the admin
// kubeconfig distro wrote, when readable.
func runKubectl(args []string) int {
	if os.Getenv("KUBECONFIG") == "" {
		if f, err := os.Open(DefaultKubeconfig); err == nil {
			f.Close()
			os.Setenv("KUBECONFIG", DefaultKubeconfig)
		}
	}
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	cmd.SetArgs(args)
	if err := cli.RunNoErrOutput(cmd); err != nil {
		util.CheckErr(err)
		return 1
	}
	return 0
}
