package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"distro/pkg/datadir"
	"distro/pkg/pki"
)

func newCertificateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certificate",
		Short: "Show this node's certificates and when they expire",
		Long: "Reads the server's config file (or takes --data-dir), so the data dir matches the server's.\n" +
			"Leaf certificates within 90 days of expiry are renewed when distro starts; the CAs last 10 years.",
	}
	cfg, prepare := withServerConfig(cmd, map[string]bool{"config": true, "data-dir": true})
	check := &cobra.Command{
		Use:   "check",
		Short: "List every certificate: file, subject, issuer, expiry, days left",
		Args:  cobra.NoArgs,
		RunE: prepare(func(_ context.Context, _ []string) error {
			server, agent := datadir.NewServer(cfg.DataDir), datadir.NewAgent(cfg.DataDir)
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
	cmd.AddCommand(check)
	return cmd
}
