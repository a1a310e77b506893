package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/etcd"
	"distro/pkg/etcd/snapshot"
)

// snapshotFlags are the server flags etcd-snapshot uses; the others are
// accepted (hidden) so that the server's config file applies unchanged.
var snapshotFlags = map[string]bool{
	"config": true, "data-dir": true, "etcd-client-port": true, "etcd-snapshot-dir": true, "node-name": true,
}

func newEtcdSnapshotCommand() *cobra.Command {
	var name, dir string
	var retention int
	cmd := &cobra.Command{
		Use:   "etcd-snapshot",
		Short: "Save, list, delete and prune snapshots of this server's etcd",
		Long: "Save, list, delete and prune snapshots of this server's embedded etcd.\n" +
			"Restore one with `distro server --cluster-reset --cluster-reset-restore-path FILE`.\n" +
			"Reads the server's config file, so the data dir and ports match the server's.",
	}
	cfg, prepare := withServerConfig(cmd, snapshotFlags)
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "snapshot folder (default: --etcd-snapshot-dir)")
	store := func() snapshot.Store {
		if dir != "" {
			return snapshot.Store{Dir: dir}
		}
		return snapshot.Store{Dir: cfg.EtcdSnapshotDir}
	}

	save := &cobra.Command{
		Use:   "save",
		Short: "Take a snapshot now (never pruned by the schedule)",
		Args:  cobra.NoArgs,
		RunE: prepare(func(ctx context.Context, _ []string) error {
			paths := datadir.NewServer(cfg.DataDir)
			cc, err := serverEtcd(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			f, st, err := store().Save(ctx, cc, name, cfg.NodeName)
			if err != nil {
				return fmt.Errorf("%w (is distro server running with --data-dir %s?)", err, cfg.DataDir)
			}
			fmt.Printf("saved %s\n", snapshot.Describe(f, st))
			snapshot.Record(ctx, adminClient(paths), cfg.NodeName, corev1.EventTypeNormal, "EtcdSnapshotSaved", snapshot.Describe(f, st))
			return nil
		}),
	}
	save.Flags().StringVar(&name, "name", snapshot.OnDemandPrefix, "snapshot name prefix; the file is <name>-<node>-<unix time>")

	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List snapshots with size and time",
		Args:    cobra.NoArgs,
		RunE: prepare(func(context.Context, []string) error {
			files, err := store().List()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSIZE\tCREATED\tLOCATION")
			for _, f := range files {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", f.Name, f.Size, f.Created.UTC().Format(time.RFC3339), f.Path)
			}
			return w.Flush()
		}),
	}

	del := &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete snapshots by name",
		Args:    cobra.MinimumNArgs(1),
		RunE: prepare(func(_ context.Context, args []string) error {
			if err := store().Delete(args...); err != nil {
				return err
			}
			fmt.Printf("deleted %s\n", strings.Join(args, ", "))
			return nil
		}),
	}

	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete all but the newest --snapshot-retention snapshots named --name",
		Args:  cobra.NoArgs,
		RunE: prepare(func(context.Context, []string) error {
			if retention < 1 {
				return fmt.Errorf("--snapshot-retention %d: keep at least 1 snapshot", retention)
			}
			deleted, err := store().Prune(name, retention)
			if err != nil {
				return err
			}
			if len(deleted) == 0 {
				fmt.Printf("nothing to prune: at most %d snapshots named %s-…\n", retention, name)
			}
			for _, d := range deleted {
				fmt.Printf("deleted %s\n", d)
			}
			return nil
		}),
	}
	prune.Flags().StringVar(&name, "name", snapshot.OnDemandPrefix, "prune snapshots with this name prefix (scheduled ones: "+snapshot.ScheduledPrefix+")")
	prune.Flags().IntVar(&retention, "snapshot-retention", 5, "number of snapshots to keep")

	cmd.AddCommand(save, ls, del, prune)
	return cmd
}

// withServerConfig gives a command that works on a server's data (etcd,
// keys) the server's flags: those in visible are shown, the others
// accepted but hidden, so the server's config file applies unchanged. It
// returns the config they fill and a wrapper for the subcommands' RunE
// that applies the config file and validates, as `distro server` does.
func withServerConfig(cmd *cobra.Command, visible map[string]bool) (*config.Server, func(func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error) {
	cfg := &config.Server{}
	server := pflag.NewFlagSet("server", pflag.ContinueOnError)
	config.AddServerFlags(server, cfg)
	server.VisitAll(func(f *pflag.Flag) {
		cmd.PersistentFlags().AddFlag(f)
		if !visible[f.Name] {
			f.Hidden = true
		}
	})
	prepare := func(f func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, args []string) error {
			fs := c.Flags()
			if err := config.ApplyFile(fs, cfg.ConfigFile, fs.Changed("config")); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			return f(ctx, args)
		}
	}
	return cfg, prepare
}

// serverEtcd is the client configuration for the server's embedded etcd,
// with the server's client certificate.
func serverEtcd(cfg *config.Server) (clientv3.Config, error) {
	paths := datadir.NewServer(cfg.DataDir)
	cc, err := etcd.ForServer(paths, cfg.NodeName, cfg.EtcdClientPort, cfg.EtcdPeerPort).ClientConfig()
	if err != nil {
		return cc, fmt.Errorf("%s is not the data dir of a distro server: %w", cfg.DataDir, err)
	}
	return cc, nil
}

// adminClient is a client with the server's admin kubeconfig, or nil when
// it cannot be read (Events are then not recorded).
func adminClient(paths datadir.Server) kubernetes.Interface {
	rc, err := clientcmd.BuildConfigFromFlags("", paths.Kubeconfig("admin"))
	if err != nil {
		return nil
	}
	rc.Timeout = 10 * time.Second
	rc.QPS, rc.Burst = 50, 100 // secrets-encrypt rewrites every Secret
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil
	}
	return c
}
