package cli

import (
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
			return server.Run(ctx, cfg)
		},
	}
	config.AddServerFlags(cmd.Flags(), cfg)
	return cmd
}
