package cli

import (
	"github.com/spf13/cobra"

	"distro/pkg/agent"
	"distro/pkg/config"
)

func newAgentCommand() *cobra.Command {
	cfg := &config.Agent{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Join a cluster as a worker node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if err := config.ApplyFile(fs, cfg.ConfigFile, fs.Changed("config")); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			processSetup()
			ctx, cancel := signalContext()
			defer cancel()
			return agent.Run(ctx, cfg)
		},
	}
	config.AddAgentFlags(cmd.Flags(), cfg)
	return cmd
}
