package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"distro/pkg/datadir"
	"distro/pkg/secretsencrypt"
)

// secretsEncryptFlags are the server flags secrets-encrypt shows.
var secretsEncryptFlags = map[string]bool{"config": true, "data-dir": true, "etcd-client-port": true}

func newSecretsEncryptCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets-encrypt",
		Short: "Show or rotate the key this cluster's Secrets are encrypted with",
		Long: "Secrets are encrypted in etcd by default (--secrets-encryption, --secrets-encryption-provider).\n" +
			"Reads the server's config file, so the data dir and ports match the server's.",
	}
	cfg, prepare := withServerConfig(cmd, secretsEncryptFlags)
	etcdClient := func() (*clientv3.Client, error) {
		cc, err := serverEtcd(cfg)
		if err != nil {
			return nil, err
		}
		return clientv3.New(cc)
	}
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
			cli, err := etcdClient()
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
	rotate := &cobra.Command{
		Use:   "rotate-keys",
		Short: "Encrypt every Secret with a new key and remove the old one (safe to interrupt and run again)",
		Args:  cobra.NoArgs,
		RunE: prepare(func(ctx context.Context, _ []string) error {
			paths := datadir.NewServer(cfg.DataDir)
			cli, err := etcdClient()
			if err != nil {
				return err
			}
			defer cli.Close()
			members, err := cli.MemberList(ctx)
			if err != nil {
				return fmt.Errorf("etcd: %w (is the server running?)", err)
			}
			if n := len(members.Members); n > 1 {
				return fmt.Errorf("rotate-keys: this cluster has %d servers, and a new key must reach every apiserver before any of them writes with it; rotating keys is only supported on a single server", n)
			}
			admin := adminClient(paths)
			if admin == nil {
				return fmt.Errorf("cannot read the admin kubeconfig %s", paths.Kubeconfig("admin"))
			}
			return secretsencrypt.Rotation{ConfigPath: paths.EncryptionConfig, Etcd: cli, Client: admin, Out: cmd.OutOrStdout()}.Run(ctx)
		}),
	}
	cmd.AddCommand(status, rotate)
	return cmd
}
