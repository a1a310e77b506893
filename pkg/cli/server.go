package cli

import (
	"context"

	"github.com/spf13/cobra"

	"distro/pkg/config"
	"distro/pkg/server"
)

func newServerCommand() *cobra.Command {
	cfg := &config.Server{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a control-plane node",
		Args:  cobra.NoArgs,
		RunE:  runWith(&cfg.ConfigFile, &cfg.Node, cfg.Validate, func(ctx context.Context) error { return server.Run(ctx, cfg) }),
	}
	config.AddServerFlags(cmd.Flags(), cfg)
	return cmd
}
