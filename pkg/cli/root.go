// Package cli holds distro's cobra commands.
package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/klog/v2"

	"distro/pkg/config"
	"distro/pkg/node/containerd"
	"distro/pkg/pki"
	"distro/pkg/profiling"
	"distro/pkg/version"
)

// Main runs distro with os.Args and returns the exit code. A binary invoked
// through a symlink named after a bundled tool runs that tool.
func Main() int {
	switch filepath.Base(os.Args[0]) {
	case "kubectl":
		return runKubectl(os.Args[1:])
	case "ctr":
		return containerd.CtrMain(os.Args[1:])
	case "crictl":
		return containerd.CrictlMain(os.Args[1:])
	}
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-v") {
		fmt.Println(version.String())
		return 0
	}
	root := NewRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "distro: "+err.Error())
		return 1
	}
	return 0
}

// NewRoot returns the distro command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "distro",
		Short:         "Kubernetes in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCommand(), newAgentCommand(), newCheckConfigCommand(), newEtcdSnapshotCommand(), newKubectlCommand(), &cobra.Command{
		Use:                "ctr",
		Short:              "Run containerd's ctr against distro's containerd (namespace k8s.io)",
		DisableFlagParsing: true,
		Run:                func(_ *cobra.Command, args []string) { os.Exit(containerd.CtrMain(args)) },
	}, &cobra.Command{
		Use:                "crictl",
		Short:              "Run crictl against distro's containerd (no crictl config needed)",
		DisableFlagParsing: true,
		Run:                func(_ *cobra.Command, args []string) { os.Exit(containerd.CrictlMain(args)) },
	}, &cobra.Command{
		Use:   "version",
		Short: "Print distro's and Kubernetes' versions (also: distro --version)",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Println(version.String()) },
	})
	root.AddCommand(newSecretsEncryptCommand(), newCertificateCommand())
	return root
}

// signalContext ends on SIGTERM or SIGINT.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// processSetup sets what every component in the process shares, once.
func processSetup(node *config.Node) error {
	// One logging configuration for the whole process, applied before any
	// component starts: the kubelet and kube-proxy apply the same one again
	// (a no-op), and the control plane's components, run below their
	// commands, do not apply any. Applying it later, as the first node
	// component starts, would replace klog's logger while the control
	// plane's goroutines read it.
	if err := node.ApplyLogging(); err != nil {
		return err
	}
	// In-process clients should not log the apiserver's warnings to them.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	// Test-only short certificate lifetimes: client-go then reloads
	// renewed client certificates as often as they are checked.
	short, err := pki.SetLifetimesFromEnv()
	if err != nil {
		return err
	}
	if short {
		klog.Warningf("test certificate lifetimes: leaves valid %s, renewed %s before expiry", pki.LeafValidity, pki.RenewBefore)
		transport.CertCallbackRefreshDuration = pki.CheckInterval()
	}
	return nil
}

// runWith is the RunE of server and agent: the config file under the flags
// (flags win), validation, process-wide setup, then run until a signal.
func runWith(configFile *string, node *config.Node, validate func() error, run func(ctx context.Context) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		fs := cmd.Flags()
		if err := config.ApplyFile(fs, *configFile, fs.Changed("config")); err != nil {
			return err
		}
		if err := validate(); err != nil {
			return err
		}
		if err := processSetup(node); err != nil {
			return err
		}
		ctx, cancel := signalContext()
		defer cancel()
		if node.EnablePprof {
			if err := profiling.Serve(ctx, node.PprofAddress); err != nil {
				return err
			}
		}
		return run(ctx)
	}
}
