package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"distro/pkg/certrenew"
	"distro/pkg/datadir"
	"distro/pkg/node/mirror"
	"distro/pkg/pki"
)

func newCertificateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certificate",
		Short: "Show this node's certificates and when they expire",
		Long: "Reads the server's config file (or takes --data-dir), so the data dir matches the server's.\n" +
			"A running server or agent renews its leaf certificates when fewer than 120 days are left, without\n" +
			"restarting anything (agents through the join API); the CAs last 10 years.",
	}
	cfg, prepare := withServerConfig(cmd, map[string]bool{"config": true, "data-dir": true})
	var served bool
	check := &cobra.Command{
		Use:   "check",
		Short: "List every certificate: file, subject, issuer, expiry, days left",
		Long: "Lists every certificate of the node. With --served, asks each local TLS endpoint (apiserver, etcd,\n" +
			"controller-manager, scheduler, kubelet, registry mirror) which certificate it serves, and exits 1\n" +
			"if one still serves another certificate than its file holds (a renewal not picked up).",
		Args: cobra.NoArgs,
		RunE: prepare(func(_ context.Context, _ []string) error {
			server, agent := datadir.NewServer(cfg.DataDir), datadir.NewAgent(cfg.DataDir)
			if served {
				return checkServed(cmd, cfg.DataDir, []servedEndpoint{
					{"kube-apiserver", fmt.Sprintf("127.0.0.1:%d", cfg.HTTPSListenPort), server.File("serving-kube-apiserver.crt")},
					{"etcd", fmt.Sprintf("127.0.0.1:%d", cfg.EtcdClientPort), server.File("etcd/server-client.crt")},
					{"kube-controller-manager", "127.0.0.1:10257", server.File("serving-kube-controller-manager.crt")},
					{"kube-scheduler", "127.0.0.1:10259", server.File("serving-kube-scheduler.crt")},
					{"kubelet", "127.0.0.1:10250", filepath.Join(agent.Cred, pki.KubeletServing+".crt")},
					{"registry mirror", fmt.Sprintf("127.0.0.1:%d", mirror.DefaultPort), filepath.Join(agent.Cred, pki.KubeletServing+".crt")},
				})
			}
			certs, err := pki.ListCerts(server.TLS, agent.Cred)
			if err != nil {
				return err
			}
			if len(certs) == 0 {
				return fmt.Errorf("no certificates under %s: is it the data dir of a distro node?", cfg.DataDir)
			}
			now := time.Now()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "FILE\tSUBJECT\tISSUER\tNOT AFTER\tDAYS LEFT\tSTATUS")
			for _, c := range certs {
				rel, _ := filepath.Rel(cfg.DataDir, c.File)
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", rel, c.Subject, c.Issuer, c.NotAfter.UTC().Format(time.RFC3339), c.DaysLeft(now), c.Status(now))
			}
			return w.Flush()
		}),
	}
	check.Flags().BoolVar(&served, "served", false, "compare what each local endpoint serves with its certificate file")
	var services []string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Renew this node's leaf certificates now, while it runs (all, or those of --service)",
		Long: "Asks the distro running on the data dir to reissue its certificates and waits for the answer.\n" +
			"Every component picks the new files up without a restart. On an agent every certificate is\n" +
			"renewed through the join API. Services: " + strings.Join(pki.ServiceNames(), ", ") + ".",
		Args: cobra.NoArgs,
		RunE: prepare(func(ctx context.Context, _ []string) error {
			if _, err := pki.ForceServices(services); err != nil {
				return fmt.Errorf("--service: %w", err)
			}
			dir := datadir.NewServer(cfg.DataDir).TLS
			if _, err := os.Stat(dir); err != nil {
				dir = datadir.NewAgent(cfg.DataDir).Cred
			}
			if _, err := os.Stat(dir); err != nil {
				return fmt.Errorf("no certificates under %s: is it the data dir of a distro node?", cfg.DataDir)
			}
			ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
			defer cancel()
			res, err := certrenew.Rotate(ctx, dir, services)
			if err != nil {
				return err
			}
			if len(res.Renewed) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing renewed")
			}
			for _, name := range res.Renewed {
				fmt.Fprintf(cmd.OutOrStdout(), "renewed %s\n", name)
			}
			return nil
		}),
	}
	rotate.Flags().StringSliceVar(&services, "service", nil, "renew only these services' certificates (repeatable)")
	cmd.AddCommand(check, rotate)
	return cmd
}

type servedEndpoint struct{ component, addr, file string }

// checkServed prints, for each endpoint whose certificate file exists, the
// serial it serves and the file's; an endpoint serving another certificate
// than its file is an error.
func checkServed(cmd *cobra.Command, dataDir string, endpoints []servedEndpoint) error {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "COMPONENT\tENDPOINT\tSERVED SERIAL\tFILE\tFILE SERIAL\tCURRENT")
	var stale []string
	for _, e := range endpoints {
		info, err := pki.ReadCert(e.file)
		if errors.Is(err, os.ErrNotExist) {
			continue // not a server, or not a node
		}
		if err != nil {
			return err
		}
		fileSerial := info.Serial
		got, err := pki.ServedSerial(e.addr)
		current := "yes"
		switch {
		case err != nil:
			got, current = "-", "not answering"
		case got != fileSerial:
			current = "NO"
			stale = append(stale, e.component)
		}
		rel, _ := filepath.Rel(dataDir, e.file)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.component, e.addr, got, rel, fileSerial, current)
	}
	w.Flush()
	if len(stale) > 0 {
		return fmt.Errorf("still serving an older certificate than its file: %s", strings.Join(stale, ", "))
	}
	return nil
}
