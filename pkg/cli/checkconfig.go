package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"distro/pkg/checkconfig"
	"distro/pkg/config"
)

const checkConfigLong = `Checks this host for what distro needs, one line per check: ok, warn (the
node runs, with a limitation) or missing (distro refuses to start), with
what to do. Kernel features, cgroups, namespaces, seccomp, sysctls, swap,
oom_score_adj, host tools and free ports. The last line counts them; the
exit status is 1 when something is missing.

Takes the same flags and config file as the command it checks for:
  distro check-config [server flags]        as for distro server
  distro check-config agent [agent flags]   as for distro agent
distro server and distro agent run the same checks at start.`

func newCheckConfigCommand() *cobra.Command {
	cmd := checkConfigServer("check-config")
	cmd.Long = checkConfigLong
	srv := checkConfigServer("server")
	srv.Short = "Check this host for distro server (the default)"
	cmd.AddCommand(srv, checkConfigAgent())
	return cmd
}

func checkConfigServer(use string) *cobra.Command {
	cfg := &config.Server{}
	cmd := &cobra.Command{
		Use:   use,
		Short: "Check this host for what a distro server or agent needs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.ApplyFile(cmd.Flags(), cfg.ConfigFile, cmd.Flags().Changed("config")); err != nil {
				return err
			}
			what := "distro server (control plane and node)"
			if cfg.DisableAgent {
				what = "distro server --disable-agent (control plane only)"
			}
			return runCheckConfig(cmd.OutOrStdout(), what, checkconfig.ForServer(cfg))
		},
	}
	config.AddServerFlags(cmd.Flags(), cfg)
	return cmd
}

func checkConfigAgent() *cobra.Command {
	cfg := &config.Agent{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Check this host for distro agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.ApplyFile(cmd.Flags(), cfg.ConfigFile, cmd.Flags().Changed("config")); err != nil {
				return err
			}
			return runCheckConfig(cmd.OutOrStdout(), "distro agent (node)", checkconfig.ForAgent(cfg))
		},
	}
	config.AddAgentFlags(cmd.Flags(), cfg)
	return cmd
}

// runCheckConfig prints every check and the summary; something missing
// ends the process with status 1 (the summary stays the last line).
func runCheckConfig(w io.Writer, what string, o checkconfig.Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(w, "checking this host for %s\n", what)
	results := checkconfig.New().Run(o)
	for _, r := range results {
		fmt.Fprintln(w, r.Line())
	}
	ok, warn, missing := checkconfig.Summary(results)
	fmt.Fprintf(w, "check-config: %d ok, %d warnings, %d missing\n", ok, warn, missing)
	if missing > 0 {
		os.Exit(1)
	}
	return nil
}
