package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"distro/pkg/datadir"
	"distro/pkg/etcd"
	"distro/pkg/secretsencrypt"
)

// secretsEncryptFlags are the server flags secrets-encrypt shows.
var secretsEncryptFlags = map[string]bool{"config": true, "data-dir": true, "etcd-client-port": true}

func newSecretsEncryptCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets-encrypt",
		Short: "Show how this cluster's Secrets are encrypted at rest",
		Long: "Secrets are encrypted in etcd by default (--secrets-encryption, --secrets-encryption-provider).\n" +
			"Reads the server's config file, so the data dir and ports match the server's.",
	}
	cfg, prepare := withServerConfig(cmd, secretsEncryptFlags)
	status := &cobra.Command{
		Use:   "status",
		Short: "The active provider and key, and what every Secret in etcd is stored with",
		Args:  cobra.NoArgs,
		RunE: prepare(func(ctx context.Context, _ []string) error {
			paths := datadir.NewServer(cfg.DataDir)
			enc, err := secretsencrypt.Load(paths.EncryptionConfig)
			if err != nil {
				return err
			}
			active := secretsencrypt.ActiveOf(enc)
			cc, err := etcd.ForServer(paths, cfg.NodeName, cfg.EtcdClientPort, cfg.EtcdPeerPort).ClientConfig()
			if err != nil {
				return fmt.Errorf("%s is not the data dir of a distro server: %w", cfg.DataDir, err)
			}
			cli, err := clientv3.New(cc)
			if err != nil {
				return err
			}
			defer cli.Close()
			st, err := secretsencrypt.Scan(ctx, cli, active)
			if err != nil {
				return fmt.Errorf("%w (is the server running?)", err)
			}
			out := cmd.OutOrStdout()
			if active.Prefix == "" {
				fmt.Fprintln(out, "Encryption: off (new Secrets are stored in plain text)")
			} else {
				fmt.Fprintf(out, "Encryption: on\nProvider: %s\nActive key: %s\n", active.Provider, active.Key)
			}
			if enc != nil {
				var ps []string
				for _, p := range enc.Resources[0].Providers {
					k := secretsencrypt.Kind(p)
					if n := len(secretsencrypt.Keys(p)); n > 0 {
						k = fmt.Sprintf("%s (%d key%s)", k, n, map[bool]string{true: "s"}[n > 1])
					}
					ps = append(ps, k)
				}
				fmt.Fprintf(out, "Configuration: %s (providers in order: %s)\n", paths.EncryptionConfig, strings.Join(ps, ", "))
			}
			fmt.Fprintf(out, "Stored: %s\n", st)
			if len(st.Stale) == 0 {
				fmt.Fprintln(out, "Every Secret is stored with the active key.")
			} else {
				fmt.Fprintf(out, "%d Secrets are not stored with the active key yet: the server rewrites them at its next start or within 30 minutes.\n", len(st.Stale))
			}
			return nil
		}),
	}
	cmd.AddCommand(status)
	return cmd
}
