package server

import (
	"context"
	"fmt"
	"os"
	"slices"

	"k8s.io/client-go/kubernetes"

	"distro/pkg/certrenew"
	"distro/pkg/component"
	"distro/pkg/config"
	"distro/pkg/datadir"
	"distro/pkg/node"
	"distro/pkg/pki"
)

// componentUsers are the control-plane kubeconfigs in the cred folder,
// each naming its leaf's files in the TLS folder.
var componentUsers = map[string]string{"admin": "client-admin", "controller": "client-controller", "scheduler": "client-scheduler"}

// writeKubeconfigs writes the control-plane components' kubeconfigs. They
// name the certificate files, so a renewal needs no rewrite.
func writeKubeconfigs(paths datadir.Server, localURL string) error {
	for user, leaf := range componentUsers {
		if err := pki.WriteKubeconfigFiles(paths.Kubeconfig(user), localURL, paths.File("server-ca.crt"),
			paths.File(leaf+".crt"), paths.File(leaf+".key")); err != nil {
			return fmt.Errorf("kubeconfig %s: %w", user, err)
		}
	}
	return nil
}

// writeUserKubeconfig writes the operator's admin kubeconfig
// (--write-kubeconfig) with everything embedded, so it can be copied to
// another machine; it is rewritten whenever the admin certificate is
// renewed.
func writeUserKubeconfig(cfg *config.Server, paths datadir.Server, localURL string) error {
	mode, _ := cfg.KubeconfigMode() // checked by Validate
	var pems [3][]byte
	for i, f := range []string{"server-ca.crt", "client-admin.crt", "client-admin.key"} {
		data, err := os.ReadFile(paths.File(f))
		if err != nil {
			return err
		}
		pems[i] = data
	}
	if err := pki.WriteKubeconfig(cfg.WriteKubeconfig, mode, localURL, pems[0], pems[1], pems[2]); err != nil {
		return fmt.Errorf("--write-kubeconfig %s: %w", cfg.WriteKubeconfig, err)
	}
	return nil
}

// certRenewer renews the server's leaves and its node's while it runs.
func certRenewer(cfg *config.Server, paths datadir.Server, in pki.ServerInput, localURL string, admin kubernetes.Interface) component.Component {
	in.Shared = nil // the shared files are in place since the first start
	creds := node.CredentialsIn(datadir.NewAgent(cfg.DataDir).Cred)
	dirs := []string{paths.TLS}
	if !cfg.DisableAgent {
		dirs = append(dirs, creds.Dir)
	}
	return &certrenew.Renewer{
		Dirs: dirs, Dir: paths.TLS, Client: admin, NodeName: cfg.NodeName,
		Renew: func(ctx context.Context, force func(string) bool) ([]string, error) {
			certs, renewed, err := pki.RenewServer(paths.TLS, in, force)
			if err != nil {
				return renewed, err
			}
			if slices.Contains(renewed, "client-admin") && cfg.WriteKubeconfig != "" {
				if err := writeUserKubeconfig(cfg, paths, localURL); err != nil {
					return renewed, err
				}
			}
			if cfg.DisableAgent {
				return renewed, nil
			}
			more, err := renewNode(cfg, certs, creds, force)
			return append(renewed, more...), err
		},
	}
}
