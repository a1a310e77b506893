package cli

import (
	"context"

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
		RunE:  runWith(&cfg.ConfigFile, &cfg.Node, cfg.Validate, func(ctx context.Context) error { return agent.Run(ctx, cfg) }),
	}
	config.AddAgentFlags(cmd.Flags(), cfg)
	return cmd
}
